//! `/simulator/…`: what the simulator accepts, what it received and sent, its transactions, and
//! its faults (read and set). The prefix cannot clash with Daraja's paths.

use axum::extract::{OriginalUri, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::config::{SANDBOX_INITIATOR_PASSWORD, SANDBOX_PASSKEY};
use crate::credential::SIMULATOR_CERTIFICATE_PEM;
use crate::faults::Faults;
use crate::{Simulator, lock};

pub(crate) fn router() -> Router<Simulator> {
    Router::new()
        .route("/simulator", get(overview))
        .route("/simulator/requests", get(requests))
        .route("/simulator/callbacks", get(callbacks))
        .route("/simulator/transactions", get(transactions))
        .route("/simulator/faults", get(faults).post(set_faults))
        .route("/simulator/reset", post(reset))
}

/// The prefix the simulator is nested under (`/sandbox` in `serve --sandbox`), for links.
fn prefix(original: &Uri, seen: &Uri) -> String {
    original
        .path()
        .strip_suffix(seen.path())
        .unwrap_or("")
        .to_owned()
}

/// Secrets other than the published test values are shown masked: a gateway started with real
/// credentials and `--sandbox` must not serve them.
fn shown(secret: &str, public: bool) -> String {
    if public {
        secret.to_owned()
    } else {
        "[REDACTED]".to_owned()
    }
}

async fn overview(
    State(sim): State<Simulator>,
    OriginalUri(original): OriginalUri,
    uri: Uri,
) -> Json<serde_json::Value> {
    let p = prefix(&original, &uri);
    let config = sim.config();
    let credentials: Vec<_> = config
        .credentials
        .iter()
        .map(|c| json!({"consumer_key": c.consumer_key, "consumer_secret": shown(&c.consumer_secret, c.is_sandbox_pair())}))
        .collect();
    let shortcodes: Vec<_> = config
        .shortcodes
        .iter()
        .map(|s| {
            json!({
                "shortcode": s.shortcode,
                "passkey": s.passkey.as_deref().map(|k| shown(k, k == SANDBOX_PASSKEY)),
                "c2b": s.c2b,
                "external_validation": sim.c2b_validation(&s.shortcode),
                "tills": s.tills,
                "name": s.name,
            })
        })
        .collect();
    let initiators: Vec<_> = config
        .initiators
        .iter()
        .map(|i| json!({"name": i.name, "password": shown(&i.password, i.password == SANDBOX_INITIATOR_PASSWORD)}))
        .collect();
    Json(json!({
        "name": "daraja-sim",
        "version": env!("CARGO_PKG_VERSION"),
        "environment": config.environment,
        "accepted_credentials": credentials,
        "shortcodes": shortcodes,
        "initiators": initiators,
        "credential_mode": config.credential_mode,
        "scenarios": config.scenarios.entries(),
        "default_outcome": config.default_outcome,
        "faults": sim.faults(),
        "settings": {
            "callback_delay_ms": config.callback_delay.as_millis() as u64,
            "prompt_timeout_ms": config.prompt_timeout.as_millis() as u64,
            "late_delay_ms": config.late_delay.as_millis() as u64,
            "result_delay_ms": config.result_delay.as_millis() as u64,
            "c2b_validation_deadline_ms": config.c2b_validation_deadline.as_millis() as u64,
            "token_lifetime_secs": config.token_lifetime.as_secs(),
            "invalidate_previous_token": config.invalidate_previous_token,
            "pending_query_answer": config.pending_query_answer,
            "max_amount": config.max_amount,
            "lock_subscriber": config.lock_subscriber,
            "c2b_msisdn": sim.c2b_msisdn(),
            "rule_limit_window_secs": config.rule_limit_window.as_secs(),
            "lenient_amounts": config.lenient_amounts,
            "timestamp_max_skew_secs": config.timestamp_max_skew.map(|d| d.as_secs()),
            "long_references": config.long_references,
            "pull_page_size": config.pull_page_size,
            "log_capacity": config.log_capacity,
            "transaction_capacity": config.transaction_capacity,
        },
        "certificate_pem": SIMULATOR_CERTIFICATE_PEM,
        "links": {
            "requests": format!("{p}/simulator/requests"),
            "callbacks": format!("{p}/simulator/callbacks"),
            "transactions": format!("{p}/simulator/transactions"),
            "faults": format!("{p}/simulator/faults"),
            "reset": format!("{p}/simulator/reset"),
            "pay_as_customer": format!("{p}/simulator/pay"),
            "c2b_pay": format!("{p}/simulator/c2b/pay"),
            "c2b_settings": format!("{p}/simulator/c2b"),
            "balances": format!("{p}/simulator/balances"),
            "daraja_base_url": if p.is_empty() { "/".to_owned() } else { p.clone() },
        },
    }))
}

#[derive(Debug, Deserialize)]
struct LogQuery {
    /// Only the newest `limit` records.
    limit: Option<usize>,
}

fn newest<T>(mut items: Vec<T>, limit: Option<usize>) -> Vec<T> {
    if let Some(limit) = limit
        && items.len() > limit
    {
        items.drain(..items.len() - limit);
    }
    items
}

async fn requests(State(sim): State<Simulator>, Query(q): Query<LogQuery>) -> Response {
    Json(newest(sim.requests(), q.limit)).into_response()
}

async fn callbacks(State(sim): State<Simulator>, Query(q): Query<LogQuery>) -> Response {
    Json(newest(sim.callbacks(), q.limit)).into_response()
}

async fn transactions(State(sim): State<Simulator>) -> Json<serde_json::Value> {
    let balances = lock(&sim.inner.books).all_balances();
    Json(json!({
        "stk": sim.stk_transactions(),
        "payments": sim.payments(),
        "balances": balances,
        "c2b_registrations": sim.c2b_registrations(),
        "pull_registrations": sim.pull_registrations(),
    }))
}

async fn faults(State(sim): State<Simulator>) -> Json<Faults> {
    Json(sim.faults())
}

/// Replaces every fault with the posted document (absent parts are cleared).
async fn set_faults(State(sim): State<Simulator>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(faults) => {
            sim.set_faults(faults);
            Json(sim.faults()).into_response()
        }
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": format!("not a faults document: {e}")})),
        )
            .into_response(),
    }
}

async fn reset(State(sim): State<Simulator>) -> Json<serde_json::Value> {
    sim.reset();
    Json(json!({"reset": true}))
}

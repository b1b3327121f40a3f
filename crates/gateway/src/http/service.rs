//! `/`, `/health` and `/metrics`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::ids::{now_ms, rfc3339};
use crate::state::AppState;

pub async fn index(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "service": "mpesa-gateway",
        "version": env!("CARGO_PKG_VERSION"),
        "status": "running",
        "environment": state.config.daraja.environment.as_str(),
        "sandbox": state.config.sandbox,
        "endpoints": {
            "health": "/health",
            "metrics": "/metrics",
            "openapi": "/api/openapi.json",
            "payments": "/api/v1/payments",
            "stk_callback": "/callbacks/{secret}/stk",
            "admin": "/admin/",
            "simulator": if state.config.sandbox { Some("/sandbox/simulator") } else { None },
        }
    }))
}

/// 200 when the database answers reads and commits writes; 503 when either fails, saying which.
/// Other dependencies are reported as last seen (the gateway keeps working without them:
/// notifications wait in the outbox).
pub async fn health(State(state): State<AppState>) -> Response {
    let db = tokio::time::timeout(Duration::from_secs(2), state.storage.ping()).await;
    let reads_ok = matches!(db, Ok(Ok(())));
    let writes = if reads_ok {
        state
            .write_probe
            .check(state.storage.as_ref(), &state.instance_id)
            .await
    } else {
        Err("not tried: the database does not answer reads".to_owned())
    };
    let database_ok = reads_ok && writes.is_ok();
    let outbox = if reads_ok {
        tokio::time::timeout(Duration::from_secs(2), state.storage.outbox_counts())
            .await
            .ok()
            .and_then(Result::ok)
    } else {
        None
    };
    if let Some(c) = &outbox {
        for (status, n) in [
            ("pending", c.pending),
            ("delivered", c.delivered),
            ("dead", c.dead),
            ("blocked", c.blocked),
        ] {
            state.metrics.set(
                "mpesa_gateway_outbox_events",
                &[("status", status)],
                n as f64,
            );
        }
    }
    let dependency = |name: &'static str, enabled: bool| {
        if enabled {
            json!(state.health.state(name))
        } else {
            json!({ "status": "disabled" })
        }
    };
    let body = json!({
        "status": if database_ok { "healthy" } else { "unhealthy" },
        "timestamp": rfc3339(now_ms()),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started_at.elapsed().as_secs(),
        "database": if reads_ok { "connected" } else { "unreachable" },
        "database_writes": match &writes {
            Ok(()) => json!({ "status": "ok" }),
            Err(error) => json!({ "status": "failing", "error": error }),
        },
        "database_backend": state.storage.backend().as_str(),
        "reconciler": dependency("reconciler", true),
        "outbox_worker": dependency("outbox", true),
        "daraja": dependency("daraja", true),
        "telegram": dependency("telegram", state.config.telegram.is_some()),
        "smtp": dependency("smtp", state.config.email.is_some()),
        "webhook": dependency("webhook", state.config.webhook.is_some()),
        "outbox": outbox.map(|c| json!({ "pending": c.pending, "due": c.due, "dead": c.dead, "blocked": c.blocked, "delivered": c.delivered })),
    });
    let status = if database_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let d = state.daraja.metrics();
    state.metrics.set(
        "mpesa_gateway_daraja_token_requests_total",
        &[],
        d.token_requests as f64,
    );
    for call in &d.calls {
        state.metrics.set(
            "mpesa_gateway_daraja_calls_total",
            &[("api", call.api), ("outcome", &call.outcome)],
            call.count as f64,
        );
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

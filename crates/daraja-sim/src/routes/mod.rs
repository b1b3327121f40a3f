//! The HTTP surface: Daraja's endpoints (one module per product), the `/simulator/…`
//! inspection paths, and what every Daraja request goes through (the request log, endpoint
//! faults, the bearer token).

pub(crate) mod c2b;
mod control;
mod initiator;
mod inspect;
mod oauth;
mod pull;
mod stk;

use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use daraja::wire::paths;

use crate::errors::ApiError;
use crate::journal::{RequestRecord, kept_body};
use crate::{Simulator, lock};
use daraja::endpoint::Api;

/// Daraja's bodies are a few hundred bytes; anything past this is refused unread.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

pub(crate) fn router(sim: Simulator) -> Router {
    let daraja = Router::new()
        .route(
            oauth_path(),
            get(oauth::generate).fallback(method_not_allowed),
        )
        .route(
            paths::STK_PUSH_PATH,
            post(stk::push).fallback(method_not_allowed),
        )
        .route(
            paths::STK_QUERY_PATH,
            post(stk::query).fallback(method_not_allowed),
        )
        .route(
            paths::C2B_REGISTER_URL_V1_PATH,
            post(c2b::register_v1).fallback(method_not_allowed),
        )
        .route(
            paths::C2B_REGISTER_URL_V2_PATH,
            post(c2b::register_v2).fallback(method_not_allowed),
        )
        .route(
            paths::C2B_SIMULATE_V1_PATH,
            post(c2b::simulate_v1).fallback(method_not_allowed),
        )
        .route(
            paths::C2B_SIMULATE_V2_PATH,
            post(c2b::simulate_v2).fallback(method_not_allowed),
        )
        .route(
            paths::B2C_V3_PATH,
            post(initiator::b2c_v3).fallback(method_not_allowed),
        )
        .route(
            paths::B2C_V1_PATH,
            post(initiator::b2c_v1).fallback(method_not_allowed),
        )
        .route(
            paths::TRANSACTION_STATUS_PATH,
            post(initiator::transaction_status).fallback(method_not_allowed),
        )
        .route(
            paths::ACCOUNT_BALANCE_PATH,
            post(initiator::account_balance).fallback(method_not_allowed),
        )
        .route(
            paths::REVERSAL_PATH,
            post(initiator::reversal).fallback(method_not_allowed),
        )
        .route(
            paths::PULL_REGISTER_PATH,
            post(pull::register).fallback(method_not_allowed),
        )
        .route(
            paths::PULL_QUERY_PATH,
            post(pull::query).fallback(method_not_allowed),
        )
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(sim.clone(), log_request));
    inspect::router()
        .route("/simulator/pay", get(control::pay_page))
        .route("/simulator/c2b/pay", post(control::pay))
        .route(
            "/simulator/c2b",
            get(control::c2b_settings).post(control::set_c2b_settings),
        )
        .route("/simulator/balances", post(control::set_balances))
        .merge(daraja)
        .with_state(sim)
}

/// `/oauth/v1/generate` (the wire constant carries the query string too).
fn oauth_path() -> &'static str {
    paths::TOKEN_PATH
        .split('?')
        .next()
        .unwrap_or(paths::TOKEN_PATH)
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// Marks an answer to be held back (the slow-answer fault). The request log records it first,
/// so a client that gives up still leaves a trace.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AnswerDelay(pub(crate) Duration);

pub(crate) fn held_back(response: impl IntoResponse, delay_ms: u64) -> Response {
    let mut response = response.into_response();
    if delay_ms > 0 {
        response
            .extensions_mut()
            .insert(AnswerDelay(Duration::from_millis(delay_ms)));
    }
    response
}

/// Records every Daraja request with its answer in the request log.
async fn log_request(State(sim): State<Simulator>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let time = sim.now();
    let method = parts.method.to_string();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let (request_bytes, response) = match axum::body::to_bytes(body, MAX_REQUEST_BYTES).await {
        Ok(bytes) => {
            let request = Request::from_parts(parts, Body::from(bytes.clone()));
            (bytes, next.run(request).await)
        }
        Err(_) => (Bytes::new(), ApiError::invalid_payload().into_response()),
    };
    let (mut parts, body) = response.into_parts();
    let answer = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let delay = parts.extensions.remove::<AnswerDelay>().map(|d| d.0);
    let status = parts.status.as_u16();
    tracing::debug!(%method, %path, status, "daraja request");
    lock(&sim.inner.requests).push_with(|seq| RequestRecord {
        seq,
        time,
        method,
        path,
        query,
        body: kept_body(&without_secrets(&request_bytes)),
        status,
        answer: kept_body(&answer),
        answer_delay_ms: delay.map_or(0, |d| d.as_millis() as u64),
    });
    sim.notify();
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    Response::from_parts(parts, Body::from(answer))
}

/// Request fields that reveal a secret: `Password` is base64 of the passkey, a
/// `SecurityCredential` can be replayed. The log (served at `/simulator/requests`) shows them
/// as `[REDACTED]`; everything else is kept as received.
const SECRET_FIELDS: [&str; 2] = ["Password", "SecurityCredential"];

fn without_secrets(body: &Bytes) -> Bytes {
    let Ok(serde_json::Value::Object(mut map)) = serde_json::from_slice::<serde_json::Value>(body)
    else {
        return body.clone();
    };
    let mut changed = false;
    for field in SECRET_FIELDS {
        if let Some(value) = map.get_mut(field) {
            *value = serde_json::Value::String("[REDACTED]".into());
            changed = true;
        }
    }
    if !changed {
        return body.clone();
    }
    serde_json::to_vec(&map)
        .map(Bytes::from)
        .unwrap_or_else(|_| body.clone())
}

/// What every Daraja API call passes first: an injected endpoint failure, then the bearer
/// token (refused with the product's own invalid-token answer).
pub(crate) fn admit(sim: &Simulator, api: Api, headers: &HeaderMap) -> Result<(), ApiError> {
    if let Some(answer) = lock(&sim.inner.faults).take_endpoint_failure(api) {
        tracing::info!(endpoint = api.as_str(), "injected endpoint failure");
        return Err(ApiError::injected(&answer));
    }
    let token = bearer_token(headers).ok_or_else(ApiError::missing_auth_header)?;
    if lock(&sim.inner.tokens).valid(token, sim.now()).is_none() {
        return Err(ApiError::invalid_token(api, token));
    }
    Ok(())
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Runs a handler body that refuses with an [`ApiError`].
pub(crate) fn answer(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

//! The Daraja simulator as `serve --sandbox` serves it beside the gateway: where it is mounted,
//! and who may use its inspection and fault routes.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::admin::session::{SESSION_COOKIE, cookie};
use crate::state::AppState;

/// `serve --sandbox` mounts the simulator under `/sandbox` (where the gateway's Daraja client
/// calls it) and, for a signed-in admin's browser (the session cookie is scoped to `/admin`),
/// under `/admin/sandbox`.
pub const MOUNTS: [&str; 2] = ["/sandbox", "/admin/sandbox"];

/// The simulator's inspection and fault routes (`…/simulator…`) show the callback URLs, secret
/// included, and change how the simulator behaves: they answer only this machine (a loopback
/// client, not forwarded for someone else) or a signed-in admin (the dashboard's session
/// cookie). Daraja's own routes stay open: the gateway's client calls them.
pub async fn guard_simulator(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if !request.uri().path().starts_with("/simulator") {
        return next.run(request).await;
    }
    let local = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|c| {
            state
                .config
                .trusted_proxies
                .is_local(c.0, request.headers())
        });
    let token = cookie(request.headers(), SESSION_COOKIE)
        .filter(|t| t.len() <= 128)
        .map(str::to_owned);
    if local || signed_in_admin(&state, token).await {
        return next.run(request).await;
    }
    (
        StatusCode::FORBIDDEN,
        axum::Json(serde_json::json!({"error": {
            "code": "forbidden",
            "message": "the simulator's inspection and fault routes answer only this machine or a signed-in admin: sign in at /admin/, then open /admin/sandbox/simulator",
        }})),
    )
        .into_response()
}

async fn signed_in_admin(state: &AppState, token: Option<String>) -> bool {
    let Some(token) = token else {
        return false;
    };
    matches!(state.accounts.session(&token).await, Ok(Some(_)))
}

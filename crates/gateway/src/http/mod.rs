//! The HTTP edge: routes, middleware, and the one error type that becomes every error answer.

pub mod api;
pub mod auth;
pub mod c2b;
pub mod client_addr;
pub mod daraja_inbound;
pub mod error;
pub mod extract;
pub mod money_out;
pub mod openapi;
pub mod payment_links;
pub mod receipts;
pub mod server;
pub mod service;
pub mod simulator;

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use crate::http::error::ApiError;
use crate::state::AppState;

/// Bodies larger than this are refused with 413 before they are read whole.
pub const BODY_LIMIT: usize = 64 * 1024;

pub fn router(state: AppState) -> Router {
    let openapi = serde_json::to_value(openapi::document()).unwrap_or_default();
    let api = Router::new()
        .route(
            "/api/v1/payments",
            post(api::create_payment).get(api::list_payments),
        )
        .route("/api/v1/payments/{id}", get(api::get_payment))
        .route("/api/v1/payments/{id}/refresh", post(api::refresh_payment))
        .route(
            "/api/v1/payment-links",
            post(payment_links::create).get(payment_links::list),
        )
        .route("/api/v1/payment-links/{id}", get(payment_links::show))
        .route(
            "/api/v1/payment-links/{id}/disable",
            post(payment_links::disable),
        )
        .route(
            "/api/v1/payments/{id}/refund",
            post(money_out::refund_payment),
        )
        .route("/api/v1/refunds/{id}", get(money_out::get_refund))
        .route("/api/v1/receipts/{code}", get(receipts::show_receipt))
        .route(
            "/api/v1/receipts/{code}/check",
            post(receipts::check_receipt),
        )
        .route(
            "/api/v1/payouts",
            post(money_out::create_payout).get(money_out::list_payouts),
        )
        .route("/api/v1/payouts/{id}", get(money_out::get_payout))
        .route(
            "/api/v1/balance",
            post(money_out::ask_balance).get(money_out::get_balance),
        )
        .route(
            "/api/v1/c2b/accounts",
            post(c2b::add_account).get(c2b::list_accounts),
        )
        .route(
            "/api/v1/c2b/accounts/{account}",
            axum::routing::delete(c2b::remove_account),
        )
        .route(
            "/api/openapi.json",
            get(move || async move { axum::Json(openapi) }),
        );
    let callbacks = Router::new()
        .route("/callbacks/{secret}/stk", post(daraja_inbound::stk))
        .route(
            "/callbacks/{secret}/c2b/validation",
            post(daraja_inbound::c2b_validation),
        )
        .route(
            "/callbacks/{secret}/c2b/confirmation",
            post(daraja_inbound::c2b_confirmation),
        )
        .route(
            "/callbacks/{secret}/pull",
            post(daraja_inbound::pull_notice),
        )
        .route(
            "/callbacks/{secret}/b2c/result",
            post(daraja_inbound::initiator_result),
        )
        .route(
            "/callbacks/{secret}/result/{api}",
            post(daraja_inbound::initiator_result),
        )
        .route(
            "/callbacks/{secret}/timeout",
            post(daraja_inbound::initiator_timeout),
        )
        .route(
            "/callbacks/{secret}/timeout/{api}",
            post(daraja_inbound::initiator_timeout),
        );
    Router::new()
        .route("/", get(service::index))
        .route("/health", get(service::health))
        .route("/metrics", get(service::metrics))
        .merge(api)
        .merge(callbacks)
        .merge(crate::admin::router())
        .merge(crate::pay_page::router())
        .merge(crate::telegram::webhook_receiver::router())
        .fallback(|| async { ApiError::NotFound("no such route") })
        // One layer made of the whole stack: `Router::layer` boxes each route once per layer, and
        // every request clones that nest of boxes (dozens of allocations a request).
        // Outermost first.
        .layer(
            tower::ServiceBuilder::new()
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::X_FRAME_OPTIONS,
                    HeaderValue::from_static("DENY"),
                ))
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                ))
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::GATEWAY_TIMEOUT,
                    Duration::from_secs(90),
                ))
                .layer(DefaultBodyLimit::max(BODY_LIMIT))
                .layer(middleware::from_fn_with_state(state.clone(), observe))
                .layer(CatchPanicLayer::custom(panicked)),
        )
        .with_state(state)
}

/// A handler that panicked (a bug, or a database driver that panics on a packet it cannot
/// decode, as sqlx's MySQL driver does when a starting server answers oddly) answers `500`
/// like any internal error, counted by `observe`, instead of cutting the connection without a
/// word. What the panic said is logged, never returned. Nothing was acknowledged: a callback
/// is answered `200` only after its commit.
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let said = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    ApiError::Internal(format!("a request's handler panicked: {said}")).into_response()
}

/// Counts and times every request by its route pattern (never the raw path: it holds secrets).
async fn observe(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    let class = match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    let elapsed = started.elapsed();
    state.metrics.inc(
        "mpesa_gateway_http_requests_total",
        &[("route", &route), ("status", class)],
    );
    state.metrics.observe(
        "mpesa_gateway_http_request_duration_seconds",
        &[("route", &route)],
        elapsed.as_secs_f64(),
    );
    tracing::debug!(%method, %route, status = status.as_u16(), elapsed_ms = elapsed.as_millis() as u64, "request");
    if status == StatusCode::PAYLOAD_TOO_LARGE
        && response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_none_or(|v| v != "application/json")
    {
        return ApiError::PayloadTooLarge.into_response();
    }
    response
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use tower::ServiceExt as _;

    use super::*;

    /// A panicking handler behind the layer the router uses answers 500 in the edge's JSON,
    /// without what the panic said (it may name internals); the connection is not cut.
    #[tokio::test]
    async fn a_panicking_handler_answers_500_without_its_message() {
        let app: Router = Router::new()
            .route(
                "/boom",
                get(|| async {
                    if true {
                        panic!("internal detail 0xdeadbeef");
                    }
                    "unreachable"
                }),
            )
            .layer(CatchPanicLayer::custom(panicked));
        let response = app
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["code"], "internal_error");
        assert!(
            !String::from_utf8_lossy(&body).contains("deadbeef"),
            "the panic's message stays in the log: {json}"
        );
    }
}

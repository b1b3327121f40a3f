//! Webhook mode (`TELEGRAM_WEBHOOK_SECRET` set): Telegram posts each update to
//! `POST /telegram/webhook` with the secret in `X-Telegram-Bot-Api-Secret-Token`, compared in
//! constant time. The update is handled before the answer: 200 once it is handled (or was
//! before), 503 when it could not be, so Telegram sends it again. The webhook is registered
//! with `max_connections: 1`, so updates come one at a time, in order, as with polling.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use secrecy::ExposeSecret;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::api::{SetWebhook, allowed_updates};
use super::bot::Bot;
use super::updates::Update;
use crate::http::error::ApiError;
use crate::ids::secrets_equal;
use crate::state::AppState;

pub const PATH: &str = "/telegram/webhook";
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

pub fn router() -> Router<AppState> {
    Router::new().route(PATH, post(receive))
}

fn answer(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

async fn receive(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some((bot, secret)) = state
        .telegram_bot
        .as_ref()
        .and_then(|bot| bot.webhook.as_ref().map(|(secret, _)| (bot, secret)))
    else {
        return ApiError::NotFound("no such route").into_response();
    };
    let given = headers
        .get(SECRET_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !secrets_equal(given, secret.expose_secret()) {
        tracing::warn!("Telegram webhook request without the right secret token; refused");
        return answer(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong or missing X-Telegram-Bot-Api-Secret-Token",
        );
    }
    let update = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(Update::from_value);
    let Some(update) = update else {
        return answer(
            StatusCode::BAD_REQUEST,
            "bad_update",
            "the body is not a Telegram update",
        );
    };
    let update_id = update.update_id;
    match bot.process(update).await {
        Ok(()) => (StatusCode::OK, axum::Json(json!({}))).into_response(),
        Err(error) => {
            tracing::warn!(update_id, %error, "Telegram update not handled; Telegram will send it again");
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "try_again",
                "the update could not be handled now",
            )
        }
    }
}

/// Registers the webhook with Telegram (`setWebhook`), retrying with backoff until it is done
/// or the gateway stops. Every instance does it at start: it is idempotent.
pub async fn register(bot: Arc<Bot>, shutdown: CancellationToken) {
    let Some((secret, url)) = bot.webhook.clone() else {
        return;
    };
    let request = SetWebhook {
        url: url.to_string(),
        secret_token: secret.expose_secret().to_owned(),
        allowed_updates: allowed_updates(),
        max_connections: 1,
    };
    let mut backoff = Duration::from_secs(1);
    loop {
        let done = async {
            bot.identify().await?;
            bot.api.set_webhook(&request).await
        };
        match done.await {
            Ok(()) => {
                tracing::info!(url = %crate::config::mask_url(url.as_str()), "Telegram webhook set");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "could not set the Telegram webhook; retrying");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

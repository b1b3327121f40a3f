//! `GET /oauth/v1/generate?grant_type=client_credentials` with Basic credentials.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use daraja::wire::{LooseString, TokenResponse};

use super::answer;
use crate::config::WrongCredentialsAnswer;
use crate::errors::ApiError;
use crate::{Simulator, ids, lock};
use daraja::endpoint::Api;

/// What `expires_in` always says (the live service sends the string).
const EXPIRES_IN: &str = "3599";

pub(crate) async fn generate(
    State(sim): State<Simulator>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    answer(issue(&sim, &uri, &headers))
}

fn issue(sim: &Simulator, uri: &Uri, headers: &HeaderMap) -> Result<Response, ApiError> {
    if let Some(failure) = lock(&sim.inner.faults).take_endpoint_failure(Api::OAuth) {
        return Err(ApiError::injected(&failure));
    }
    // Exactly `grant_type=client_credentials`: a trailing space (`%20`) is refused, as Daraja does.
    let grant_ok = uri.query().is_some_and(|q| {
        q.split('&')
            .any(|pair| pair == "grant_type=client_credentials")
    });
    if !grant_ok {
        return Err(ApiError::new(
            400,
            "400.008.02",
            "Invalid grant type passed",
        ));
    }
    let (key, secret) = basic_credentials(headers)
        .ok_or_else(|| ApiError::new(400, "400.008.01", "Invalid Authentication passed"))?;
    let config = sim.config();
    let known = config
        .credentials
        .iter()
        .any(|c| c.consumer_key == key && c.consumer_secret == secret);
    if !known {
        tracing::info!(consumer_key = %masked(&key), "OAuth refused: wrong consumer key or secret");
        return Err(match config.wrong_credentials_answer {
            WrongCredentialsAnswer::Envelope => {
                ApiError::new(400, "400.008.01", "Invalid Authentication passed")
            }
            WrongCredentialsAnswer::EmptyBody => ApiError::empty(400),
        });
    }
    let token = ids::access_token();
    let lifetime =
        chrono::Duration::from_std(config.token_lifetime).unwrap_or(chrono::Duration::hours(1));
    lock(&sim.inner.tokens).issue(
        token.clone(),
        &key,
        sim.now() + lifetime,
        config.invalidate_previous_token,
    );
    tracing::debug!(consumer_key = %masked(&key), "access token issued");
    Ok(Json(TokenResponse {
        access_token: token,
        expires_in: Some(LooseString::from(EXPIRES_IN)),
    })
    .into_response())
}

/// `Authorization: Basic base64(key:secret)`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (key, secret) = decoded.split_once(':')?;
    Some((key.to_owned(), secret.to_owned()))
}

/// A consumer key for logs: its first four characters. Half of a credential pair stays out of
/// log files even in a simulator.
fn masked(key: &str) -> String {
    let head: String = key.chars().take(4).collect();
    format!("{head}…")
}

//! Merchant API keys: `Authorization: Bearer <key>`, checked by the accounts service
//! ([`crate::accounts::Accounts::authenticate`]: only the SHA-256 of a key is stored, and a short
//! cache keeps the database out of the hot path).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use mpesa_storage::ApiKey;

use crate::http::error::ApiError;
use crate::state::AppState;

pub use crate::accounts::generate_api_key;

/// The authenticated caller of the merchant API.
pub struct Merchant(pub ApiKey);

impl FromRequestParts<AppState> for Merchant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthorized)?;
        let key = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.len() <= 200)
            .ok_or(ApiError::Unauthorized)?;
        let api_key = state
            .accounts
            .authenticate(key)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        Ok(Merchant(api_key))
    }
}

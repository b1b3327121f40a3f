//! Merchant API keys: `Authorization: Bearer <key>`. Only the SHA-256 of a key is stored; a
//! short cache keeps the database out of the hot path (a revoked key stops working on this
//! instance at once, on others within the cache lifetime).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use mpesa_storage::ApiKey;

use crate::http::error::ApiError;
use crate::ids::{now_ms, random_token, sha256_hex};
use crate::state::AppState;

const CACHE_FOR: Duration = Duration::from_secs(5);
const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// Keys look like `mpg_` + 40 letters and digits.
pub const KEY_PREFIX: &str = "mpg_";

/// Makes a new key: the text to show once, and the record to store.
pub fn generate_api_key(name: &str) -> (String, ApiKey) {
    let secret = format!("{KEY_PREFIX}{}", random_token(40));
    let record = ApiKey {
        id: crate::ids::new_id("key"),
        name: name.to_owned(),
        prefix: secret.chars().take(10).collect(),
        hash: sha256_hex(&secret),
        created_at: now_ms(),
        revoked_at: None,
        last_used_at: None,
    };
    (secret, record)
}

#[derive(Default)]
pub struct ApiKeyCache {
    entries: Mutex<HashMap<String, (ApiKey, Instant)>>,
    touched: Mutex<HashMap<String, Instant>>,
}

impl ApiKeyCache {
    pub fn forget(&self, id: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, (k, _)| k.id != id);
    }
}

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
        let hash = sha256_hex(key);
        let cached = {
            let entries = state
                .api_keys
                .entries
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            entries
                .get(&hash)
                .filter(|(_, at)| at.elapsed() < CACHE_FOR)
                .map(|(k, _)| k.clone())
        };
        let api_key = match cached {
            Some(k) => k,
            None => {
                let found = state
                    .storage
                    .find_api_key_by_hash(&hash)
                    .await?
                    .ok_or(ApiError::Unauthorized)?;
                state
                    .api_keys
                    .entries
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(hash, (found.clone(), Instant::now()));
                found
            }
        };
        let touch = {
            let mut touched = state
                .api_keys
                .touched
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match touched.get(&api_key.id) {
                Some(at) if at.elapsed() < TOUCH_EVERY => false,
                _ => {
                    touched.insert(api_key.id.clone(), Instant::now());
                    true
                }
            }
        };
        if touch {
            let storage = state.storage.clone();
            let id = api_key.id.clone();
            tokio::spawn(async move {
                let _ = storage.touch_api_key(&id, now_ms()).await;
            });
        }
        Ok(Merchant(api_key))
    }
}

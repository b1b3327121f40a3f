//! The OAuth access token, shared by every call.
//!
//! * Cached until shortly before it expires (`token_refresh_margin`, at most half the lifetime),
//!   never used after `expires_in`.
//! * Single flight: however many calls find the cache cold or expiring, one token request goes
//!   out; the others wait for it and share its token, or its failure.
//! * When Daraja rejects a token, the caller drops it (only if it is still the current one, so a
//!   late rejection cannot throw away a newer token) and asks again.
//! * If a refresh fails while the old token is still within its lifetime, the old token is used.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret as _, SecretString};

use crate::api::Api;
use crate::clock::Clock;
use crate::error::DarajaError;
use crate::metrics::Metrics;
use crate::transport::{Transport, decode};
use crate::wire::TokenResponse;
use crate::wire::oauth::TOKEN_PATH;

/// Used when Daraja states no lifetime: the documented `3599`.
const DEFAULT_LIFETIME_SECS: u64 = 3599;
/// A stated lifetime beyond a day is not believed.
const MAX_LIFETIME_SECS: u64 = 86_400;

/// A token and the generation that identifies it in the cache.
#[derive(Clone)]
pub(crate) struct AccessToken {
    pub(crate) value: SecretString,
    pub(crate) generation: u64,
}

struct CachedToken {
    token: AccessToken,
    refresh_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

/// What the refresh lock protects: the outcome of the last attempt, for the callers that waited
/// on it.
struct RefreshState {
    last_error: Option<DarajaError>,
}

pub(crate) struct TokenManager {
    consumer_key: SecretString,
    consumer_secret: SecretString,
    clock: Arc<dyn Clock>,
    margin: Duration,
    metrics: Arc<Metrics>,
    current: Mutex<Option<CachedToken>>,
    refresh: tokio::sync::Mutex<RefreshState>,
    attempts: AtomicU64,
    generations: AtomicU64,
}

impl TokenManager {
    pub(crate) fn new(
        consumer_key: SecretString,
        consumer_secret: SecretString,
        clock: Arc<dyn Clock>,
        margin: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        TokenManager {
            consumer_key,
            consumer_secret,
            clock,
            margin,
            metrics,
            current: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(RefreshState { last_error: None }),
            attempts: AtomicU64::new(0),
            generations: AtomicU64::new(0),
        }
    }

    /// A token that is fresh (before its refresh time), fetching one if needed.
    pub(crate) async fn get(&self, transport: &Transport) -> Result<AccessToken, DarajaError> {
        if let Some(token) = self.fresh(self.clock.now()) {
            return Ok(token);
        }
        let attempts_seen = self.attempts.load(Ordering::SeqCst);
        let mut state = self.refresh.lock().await;
        let now = self.clock.now();
        if let Some(token) = self.fresh(now) {
            return Ok(token);
        }
        // An attempt finished while we waited for the lock: share its failure instead of
        // sending one request per waiter.
        if self.attempts.load(Ordering::SeqCst) != attempts_seen
            && let Some(error) = &state.last_error
        {
            return self.still_valid(now).ok_or_else(|| error.clone());
        }
        let result = self.fetch(transport).await;
        self.attempts.fetch_add(1, Ordering::SeqCst);
        match result {
            Ok(cached) => {
                let token = cached.token.clone();
                *self.lock_current() = Some(cached);
                state.last_error = None;
                Ok(token)
            }
            Err(error) => {
                state.last_error = Some(error.clone());
                self.still_valid(self.clock.now()).ok_or(error)
            }
        }
    }

    /// Drops the token of this generation if it is still the cached one.
    pub(crate) fn invalidate(&self, generation: u64) {
        let mut current = self.lock_current();
        if current
            .as_ref()
            .is_some_and(|c| c.token.generation == generation)
        {
            *current = None;
        }
    }

    fn lock_current(&self) -> std::sync::MutexGuard<'_, Option<CachedToken>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fresh(&self, now: DateTime<Utc>) -> Option<AccessToken> {
        self.lock_current()
            .as_ref()
            .filter(|c| now < c.refresh_at)
            .map(|c| c.token.clone())
    }

    fn still_valid(&self, now: DateTime<Utc>) -> Option<AccessToken> {
        self.lock_current()
            .as_ref()
            .filter(|c| now < c.expires_at)
            .map(|c| c.token.clone())
    }

    async fn fetch(&self, transport: &Transport) -> Result<CachedToken, DarajaError> {
        self.metrics.token_requested();
        // The lifetime is counted from before the request: the token can only be younger.
        let requested_at = self.clock.now();
        let started = Instant::now();
        let request = transport.http.get(transport.url(TOKEN_PATH)).basic_auth(
            self.consumer_key.expose_secret(),
            Some(self.consumer_secret.expose_secret()),
        );
        let result = match transport.send(Api::OAuth, request).await {
            Ok(answer) => decode::<TokenResponse>(Api::OAuth, &answer, None).and_then(|t| {
                if t.access_token.trim().is_empty() {
                    Err(DarajaError::Malformed {
                        api: Api::OAuth,
                        status: answer.status,
                        reason: "empty access_token".into(),
                    })
                } else {
                    Ok(t)
                }
            }),
            Err(e) => Err(e),
        };
        let outcome = match &result {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.outcome_label(),
        };
        tracing::debug!(api = Api::OAuth.as_str(), duration_ms = started.elapsed().as_millis() as u64, outcome = %outcome, "daraja call");
        self.metrics.call_finished(Api::OAuth, outcome);
        let response = result.inspect_err(|_| self.metrics.token_failed())?;
        let lifetime_secs = response
            .expires_in_secs()
            .unwrap_or(DEFAULT_LIFETIME_SECS)
            .clamp(1, MAX_LIFETIME_SECS);
        let lifetime = Duration::from_secs(lifetime_secs);
        let margin = self.margin.min(lifetime / 2);
        let to_chrono = |d: Duration| chrono::Duration::from_std(d).expect("at most a day");
        Ok(CachedToken {
            token: AccessToken {
                value: SecretString::from(response.access_token),
                generation: self.generations.fetch_add(1, Ordering::SeqCst) + 1,
            },
            refresh_at: requested_at + to_chrono(lifetime - margin),
            expires_at: requested_at + to_chrono(lifetime),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    #[tokio::test]
    async fn dropping_an_old_generation_keeps_the_current_token() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/oauth/v1/generate"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"access_token": "t", "expires_in": 3599})),
            )
            .expect(2)
            .mount(&server)
            .await;
        crate::install_crypto_provider();
        let transport = Transport::new(
            server.uri().parse().unwrap(),
            Duration::from_secs(5),
            Duration::from_secs(5),
        )
        .unwrap();
        let metrics = Arc::new(Metrics::default());
        let tokens = TokenManager::new(
            SecretString::from("k"),
            SecretString::from("s"),
            Arc::new(SystemClock),
            Duration::from_secs(300),
            metrics.clone(),
        );
        let first = tokens.get(&transport).await.unwrap();
        tokens.invalidate(first.generation);
        let second = tokens.get(&transport).await.unwrap();
        assert_ne!(first.generation, second.generation);
        // A rejection of the first token that arrives late must not throw the second away.
        tokens.invalidate(first.generation);
        assert_eq!(
            tokens.get(&transport).await.unwrap().generation,
            second.generation
        );
        assert_eq!(metrics.snapshot().token_requests, 2);
    }
}

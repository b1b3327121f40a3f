//! The OAuth access token, shared by every call.
//!
//! * Cached until shortly before it expires (`token_refresh_margin`, at most half the lifetime),
//!   never used after `expires_in`.
//! * Single flight: however many calls find the cache cold or expiring, one token request goes
//!   out; the others wait for it and share its token, or its failure.
//! * When Daraja rejects a token, the caller drops it (only if it is still the current one, so a
//!   late rejection cannot throw away a newer token) and asks again.
//! * If a refresh fails while the old token is still within its lifetime, the old token is used.
//! * Shared (optional, [`SharedTokenStore`]): Daraja invalidates a consumer key's previous token
//!   whenever it issues a new one, so instances that each fetch their own knock each other's
//!   out. With a store (the gateway keeps one in its database), the instances of a deployment
//!   use one token: an instance whose cache is stale first looks in the store; only the one
//!   instance holding the store's refresh lease asks Daraja, and publishes the token with its
//!   refresh and expiry times, which every instance then follows. If the store cannot be
//!   reached, the instance fetches a token of its own (availability first).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret as _, SecretString};
use std::sync::OnceLock;

use crate::clock::Clock;
use crate::endpoint::Api;
use crate::error::DarajaError;
use crate::metrics::Metrics;
use crate::transport::{Transport, decode};
use crate::wire::TokenResponse;
use crate::wire::oauth::TOKEN_PATH;

/// Used when Daraja states no lifetime: the documented `3599`.
const DEFAULT_LIFETIME_SECS: u64 = 3599;
/// A stated lifetime beyond a day is not believed.
const MAX_LIFETIME_SECS: u64 = 86_400;

/// How long an instance may take to get a token from Daraja and publish it before another one
/// may try (the store's refresh lease), beyond the request's own timeout.
const SHARED_REFRESH_SLACK: Duration = Duration::from_secs(5);
/// How often an instance waiting for another's refresh looks in the store.
const SHARED_POLL: Duration = Duration::from_millis(100);

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
    /// Its serial in the shared store, when it came from (or went to) one.
    serial: Option<u64>,
}

/// The token the instances of one deployment share, as a [`SharedTokenStore`] keeps it.
#[derive(Clone)]
pub struct SharedToken {
    /// The access token itself: a secret (the store should keep it encrypted).
    pub value: SecretString,
    /// Counts the deployment's tokens: a refused token is told apart from a newer one by it.
    pub serial: u64,
    /// When instances stop using it and one of them asks Daraja for the next.
    pub refresh_at: DateTime<Utc>,
    /// When Daraja stops accepting it.
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for SharedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedToken")
            .field("value", &"[REDACTED]")
            .field("serial", &self.serial)
            .field("refresh_at", &self.refresh_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The store could not be read or written (the database is down): the instance then gets a
/// token of its own.
#[derive(Debug, Clone, thiserror::Error)]
#[error("shared token store: {0}")]
pub struct SharedTokenError(pub String);

/// Where the instances of a deployment keep their one token, and the lease that lets one of
/// them at a time refresh it. Implemented by the application over its shared database; this
/// crate does not know which.
#[async_trait::async_trait]
pub trait SharedTokenStore: Send + Sync + 'static {
    /// The current token, if one was published (and can still be read).
    async fn load(&self) -> Result<Option<SharedToken>, SharedTokenError>;
    /// Takes the refresh lease until `until` if no other instance holds it; true when this
    /// instance holds it now.
    async fn begin_refresh(&self, until: DateTime<Utc>) -> Result<bool, SharedTokenError>;
    /// Publishes a new token.
    async fn publish(&self, token: &SharedToken) -> Result<(), SharedTokenError>;
    /// Gives the refresh lease back.
    async fn end_refresh(&self) -> Result<(), SharedTokenError>;
}

/// Why a shared refresh gave no token.
enum SharedFailure {
    /// The store is unusable: fetch a token of our own.
    Store(SharedTokenError),
    /// Daraja refused or failed the token request.
    Daraja(DarajaError),
}

impl From<SharedTokenError> for SharedFailure {
    fn from(e: SharedTokenError) -> Self {
        SharedFailure::Store(e)
    }
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
    shared: OnceLock<Arc<dyn SharedTokenStore>>,
    /// The shared serial Daraja refused last: not to be taken from the store again.
    refused_serial: Mutex<Option<u64>>,
    /// How long the token request may take (the refresh lease is this plus some slack).
    request_timeout: Duration,
}

impl TokenManager {
    pub(crate) fn new(
        consumer_key: SecretString,
        consumer_secret: SecretString,
        clock: Arc<dyn Clock>,
        margin: Duration,
        metrics: Arc<Metrics>,
        request_timeout: Duration,
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
            shared: OnceLock::new(),
            refused_serial: Mutex::new(None),
            request_timeout,
        }
    }

    /// Shares tokens with the other instances through `store` from now on. Only the first call
    /// counts.
    pub(crate) fn share_through(&self, store: Arc<dyn SharedTokenStore>) {
        let _ = self.shared.set(store);
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
        if let Some(store) = self.shared.get() {
            match self.get_shared(store.as_ref(), transport).await {
                Ok(token) => {
                    self.attempts.fetch_add(1, Ordering::SeqCst);
                    state.last_error = None;
                    return Ok(token);
                }
                Err(SharedFailure::Daraja(error)) => {
                    self.attempts.fetch_add(1, Ordering::SeqCst);
                    state.last_error = Some(error.clone());
                    return self.still_valid(self.clock.now()).ok_or(error);
                }
                Err(SharedFailure::Store(error)) => {
                    tracing::warn!(%error, "cannot share the access token; this instance gets its own");
                }
            }
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

    /// Drops the token of this generation if it is still the cached one (and, when it was the
    /// shared one, remembers not to take it from the store again).
    pub(crate) fn invalidate(&self, generation: u64) {
        let mut current = self.lock_current();
        if let Some(c) = current.as_ref()
            && c.token.generation == generation
        {
            if let Some(serial) = c.serial {
                *self
                    .refused_serial
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(serial);
            }
            *current = None;
        }
    }

    /// The shared token if it is fresh and not refused; otherwise the refresh lease and a new
    /// token from Daraja, published; otherwise waits for the instance that holds the lease.
    async fn get_shared(
        &self,
        store: &dyn SharedTokenStore,
        transport: &Transport,
    ) -> Result<AccessToken, SharedFailure> {
        let lease = self.request_timeout + SHARED_REFRESH_SLACK;
        let give_up = Instant::now() + lease + SHARED_REFRESH_SLACK;
        loop {
            let now = self.clock.now();
            let current = store.load().await?;
            if let Some(token) = self.adopt_if_usable(current.as_ref(), now) {
                return Ok(token);
            }
            let until = now + chrono::Duration::from_std(lease).expect("seconds");
            if store.begin_refresh(until).await? {
                let result = self.refresh_shared(store, transport).await;
                if let Err(error) = store.end_refresh().await {
                    tracing::debug!(%error, "could not give the token refresh lease back; it lapses");
                }
                return result;
            }
            if Instant::now() > give_up {
                return Err(SharedFailure::Store(SharedTokenError(
                    "another instance held the token refresh lease too long".into(),
                )));
            }
            // Another instance is asking Daraja: its token will be in the store.
            tokio::time::sleep(SHARED_POLL).await;
        }
    }

    /// Under the refresh lease: the store once more (another instance may have published just
    /// before we took the lease), then Daraja.
    async fn refresh_shared(
        &self,
        store: &dyn SharedTokenStore,
        transport: &Transport,
    ) -> Result<AccessToken, SharedFailure> {
        let current = store.load().await?;
        if let Some(token) = self.adopt_if_usable(current.as_ref(), self.clock.now()) {
            return Ok(token);
        }
        let mut fetched = self.fetch(transport).await.map_err(SharedFailure::Daraja)?;
        let serial = current.map_or(1, |c| c.serial.wrapping_add(1));
        fetched.serial = Some(serial);
        let shared = SharedToken {
            value: fetched.token.value.clone(),
            serial,
            refresh_at: fetched.refresh_at,
            expires_at: fetched.expires_at,
        };
        let token = fetched.token.clone();
        *self.lock_current() = Some(fetched);
        // Not published: the others will refresh for themselves (and refuse ours); still ours.
        if let Err(error) = store.publish(&shared).await {
            tracing::warn!(%error, "could not publish the new access token to the other instances");
        }
        Ok(token)
    }

    /// Caches and returns `shared` if it can be used now: before its refresh time and not the
    /// one Daraja refused.
    fn adopt_if_usable(
        &self,
        shared: Option<&SharedToken>,
        now: DateTime<Utc>,
    ) -> Option<AccessToken> {
        let shared = shared?;
        let refused = *self
            .refused_serial
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if now >= shared.refresh_at || refused == Some(shared.serial) {
            return None;
        }
        let token = AccessToken {
            value: shared.value.clone(),
            generation: self.generations.fetch_add(1, Ordering::SeqCst) + 1,
        };
        *self.lock_current() = Some(CachedToken {
            token: token.clone(),
            refresh_at: shared.refresh_at,
            expires_at: shared.expires_at,
            serial: Some(shared.serial),
        });
        Some(token)
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
            serial: None,
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
            Duration::from_secs(5),
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

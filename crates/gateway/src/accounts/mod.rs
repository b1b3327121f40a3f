//! Who may come in, and as whom: the dashboard's users, their sessions and signing in (with its
//! rate limit, [`rate_limit`]), the merchant API keys (with a short cache that keeps the
//! database out of the hot path), and the Telegram chats linked to a phone number.
//!
//! The doors (the dashboard, the merchant API's `Authorization` header, the sandbox banner, the
//! bot) call these operations and translate their answers; none of them holds storage.

pub mod rate_limit;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use mpesa_storage::{AdminSession, AdminUser, ApiKey, Storage, StorageError, TelegramLink};

use crate::ids::{now_ms, random_token, sha256_hex};

/// How long a session lasts after sign-in.
pub const SESSION_LIFETIME_MS: i64 = 12 * 3_600_000;
/// How long a found API key is trusted without asking the database again.
const KEY_CACHE_FOR: Duration = Duration::from_secs(5);
/// How often a key's `last_used_at` is written, at most.
const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// The fewest characters a dashboard password may have.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Keys look like `mpg_` + 40 letters and digits.
pub const KEY_PREFIX: &str = "mpg_";

/// Makes a new key: the text to show once, and the record to store (only its hash is kept).
pub fn generate_api_key(name: &str, created_by: Option<String>) -> (String, ApiKey) {
    let secret = format!("{KEY_PREFIX}{}", random_token(40));
    let record = ApiKey {
        id: crate::ids::new_id("key"),
        name: name.to_owned(),
        prefix: secret.chars().take(10).collect(),
        hash: sha256_hex(&secret),
        created_at: now_ms(),
        revoked_at: None,
        last_used_at: None,
        created_by,
    };
    (secret, record)
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("password check: {0}")]
    PasswordCheck(String),
    /// A username or password the rules refuse; the message says which rule, safe to show.
    #[error("{0}")]
    Refused(String),
}

/// What became of a sign-in attempt.
#[derive(Debug)]
pub enum SignIn {
    /// Too many failures for this name from this address, or from the address: try again then.
    TooManyAttempts { retry_after: Duration },
    /// Wrong username or password (one answer for both, in the same time).
    Refused,
    /// A new session: its token (for the cookie) and whose it is.
    SignedIn { token: String, username: String },
}

/// Keys found recently (by the hash of their secret), and when each was last touched.
#[derive(Default)]
struct KeyCache {
    entries: Mutex<HashMap<String, (ApiKey, Instant)>>,
    touched: Mutex<HashMap<String, Instant>>,
}

/// The accounts service: cheap to clone.
#[derive(Clone)]
pub struct Accounts {
    storage: Arc<dyn Storage>,
    keys: Arc<KeyCache>,
}

/// A dashboard username: 1 to 64 letters, digits or `. _ - @` (a door can ask before it asks
/// for the password).
pub fn check_username(username: &str) -> Result<(), AccountError> {
    let fits = !username.is_empty()
        && username.len() <= 64
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if fits {
        Ok(())
    } else {
        Err(AccountError::Refused(
            "a username is 1 to 64 letters, digits or . _ - @".into(),
        ))
    }
}

/// A PHC hash of a random password with the same parameters as real ones: what an unknown
/// username is checked against, so that it takes as long as a wrong password.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| hash_password(&random_token(24)).unwrap_or_default());

/// An Argon2id PHC string for a password (a new user's, or a new password).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

impl Accounts {
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Accounts {
            storage,
            keys: Arc::default(),
        }
    }

    // ---- dashboard sessions and users ----------------------------------------------------

    /// The session a cookie's token opens, if it is one and has not expired.
    pub async fn session(&self, token: &str) -> Result<Option<AdminSession>, StorageError> {
        self.storage
            .find_session(&sha256_hex(token), now_ms())
            .await
    }

    /// Signs a user in: the attempt is counted (see [`rate_limit`]) before the password is
    /// checked on a blocking thread; a right one clears the count and opens a new session,
    /// ending `previous_token`'s (no session fixation). `address` is the client's, as the
    /// door sees it.
    pub async fn sign_in(
        &self,
        username: &str,
        password: String,
        address: Option<&str>,
        previous_token: Option<&str>,
    ) -> Result<SignIn, AccountError> {
        // Counted as a failure until the password proves right (see `rate_limit`).
        let counted_as = (
            rate_limit::normalise(username),
            address.unwrap_or("unknown").to_owned(),
        );
        let now = now_ms();
        if let Some(retry_at) = self
            .storage
            .begin_sign_in(
                &counted_as.0,
                &counted_as.1,
                now,
                now - rate_limit::ADDRESS_WINDOW.as_millis() as i64,
                &|failures| rate_limit::decide(failures, now),
            )
            .await?
        {
            return Ok(SignIn::TooManyAttempts {
                retry_after: Duration::from_millis((retry_at - now).max(1_000) as u64),
            });
        }

        let user = if username.len() <= 64 {
            self.storage.find_admin_user(username).await?
        } else {
            None
        };
        let phc = user.as_ref().map(|u| u.password_hash.clone());
        let verified = tokio::task::spawn_blocking(move || {
            let known = phc.is_some();
            let ok = verify_password(&password, phc.as_deref().unwrap_or(DUMMY_HASH.as_str()));
            known && ok
        })
        .await
        .map_err(|e| AccountError::PasswordCheck(e.to_string()))?;
        let Some(user) = user.filter(|_| verified) else {
            return Ok(SignIn::Refused);
        };
        self.storage
            .clear_sign_in_failures(&counted_as.0, &counted_as.1)
            .await?;

        if let Some(old) = previous_token {
            self.storage.delete_session(&sha256_hex(old)).await?;
        }
        let now = now_ms();
        let token = random_token(43);
        self.storage
            .create_session(&AdminSession {
                token_hash: sha256_hex(&token),
                user_id: user.id.clone(),
                username: user.username.clone(),
                csrf_token: random_token(32),
                created_at: now,
                expires_at: now + SESSION_LIFETIME_MS,
            })
            .await?;
        if let Err(error) = self.storage.delete_expired_sessions(now).await {
            tracing::warn!(%error, "could not delete expired dashboard sessions");
        }
        let forget_before = now - rate_limit::FORGET_AFTER.as_millis() as i64;
        if let Err(error) = self
            .storage
            .delete_sign_in_failures_before(forget_before)
            .await
        {
            tracing::warn!(%error, "could not forget old sign-in failures");
        }
        Ok(SignIn::SignedIn {
            token,
            username: user.username,
        })
    }

    /// Ends the session a token opened (the cookie is worthless afterwards, even if kept).
    pub async fn sign_out(&self, token: &str) -> Result<(), StorageError> {
        self.storage.delete_session(&sha256_hex(token)).await
    }

    pub async fn admin_users(&self) -> Result<Vec<AdminUser>, StorageError> {
        self.storage.list_admin_users().await
    }

    /// Ends every session of a user: `None` when there is no such user, else how many ended.
    pub async fn sign_out_everywhere(&self, username: &str) -> Result<Option<u64>, StorageError> {
        if self.storage.find_admin_user(username).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(self.storage.delete_sessions_of(username).await?))
    }

    /// Creates a dashboard user, or gives an existing one a new password (which ends all of
    /// their sessions); true when created. A username is 1 to 64 letters, digits or `. _ - @`,
    /// a password at least [`MIN_PASSWORD_CHARS`] characters; only its Argon2id hash is kept.
    pub async fn set_admin_user(
        &self,
        username: &str,
        password: &str,
    ) -> Result<bool, AccountError> {
        let username = username.trim();
        check_username(username)?;
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(AccountError::Refused(format!(
                "the password must have at least {MIN_PASSWORD_CHARS} characters"
            )));
        }
        let password_hash =
            hash_password(password).map_err(|e| AccountError::PasswordCheck(e.to_string()))?;
        Ok(self
            .storage
            .upsert_admin_user(&AdminUser {
                id: crate::ids::new_id("usr"),
                username: username.to_owned(),
                password_hash,
                created_at: now_ms(),
            })
            .await?)
    }

    /// Removes a user and their sessions; false when there was no such user.
    pub async fn remove_admin_user(&self, username: &str) -> Result<bool, StorageError> {
        self.storage.delete_admin_user(username).await
    }

    // ---- merchant API keys ---------------------------------------------------------------

    /// The active key whose secret this is (cached for a few seconds; a revoked key stops
    /// working on this instance at once, on others within that time). Its `last_used_at` is
    /// written at most once a minute, in the background.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<ApiKey>, StorageError> {
        let hash = sha256_hex(secret);
        let cached = {
            let entries = self.keys.entries.lock().unwrap_or_else(|e| e.into_inner());
            entries
                .get(&hash)
                .filter(|(_, at)| at.elapsed() < KEY_CACHE_FOR)
                .map(|(k, _)| k.clone())
        };
        let api_key = match cached {
            Some(k) => k,
            None => {
                let Some(found) = self.storage.find_api_key_by_hash(&hash).await? else {
                    return Ok(None);
                };
                self.keys
                    .entries
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(hash, (found.clone(), Instant::now()));
                found
            }
        };
        let touch = {
            let mut touched = self.keys.touched.lock().unwrap_or_else(|e| e.into_inner());
            match touched.get(&api_key.id) {
                Some(at) if at.elapsed() < TOUCH_EVERY => false,
                _ => {
                    touched.insert(api_key.id.clone(), Instant::now());
                    true
                }
            }
        };
        if touch {
            let storage = self.storage.clone();
            let id = api_key.id.clone();
            tokio::spawn(async move {
                let _ = storage.touch_api_key(&id, now_ms()).await;
            });
        }
        Ok(Some(api_key))
    }

    /// Whether this secret is an active key (uncached: for the sandbox's saved key).
    pub async fn is_active_key(&self, secret: &str) -> Result<bool, StorageError> {
        Ok(self
            .storage
            .find_api_key_by_hash(&sha256_hex(secret))
            .await?
            .is_some())
    }

    /// Every key, revoked ones too.
    pub async fn api_keys(&self) -> Result<Vec<ApiKey>, StorageError> {
        self.storage.list_api_keys().await
    }

    /// A new key named `name`, made by `created_by` (`admin:<username>` on the dashboard): its
    /// secret (to show once) and record. A name in use is `Err(Conflict)`.
    pub async fn create_api_key(
        &self,
        name: &str,
        created_by: Option<String>,
    ) -> Result<(String, ApiKey), StorageError> {
        let (secret, record) = generate_api_key(name, created_by);
        self.storage.create_api_key(&record).await?;
        Ok((secret, record))
    }

    /// Revokes the active key with this id (never a name that happens to equal the text);
    /// false when there is none. This instance stops accepting it at once.
    pub async fn revoke_api_key_by_id(&self, id: &str) -> Result<bool, StorageError> {
        let is_active_id = self
            .storage
            .list_api_keys()
            .await?
            .iter()
            .any(|k| k.id == id && k.revoked_at.is_none());
        let revoked = is_active_id && self.storage.revoke_api_key(id, now_ms()).await?;
        if revoked {
            self.keys
                .entries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|_, (k, _)| k.id != id);
        }
        Ok(revoked)
    }

    /// Revokes the active key with this id or, failing that, this name (the command line's
    /// `api-keys revoke ID_OR_NAME`); false when there is none. This instance stops accepting
    /// it at once.
    pub async fn revoke_api_key_by_id_or_name(
        &self,
        id_or_name: &str,
    ) -> Result<bool, StorageError> {
        let revoked = self.storage.revoke_api_key(id_or_name, now_ms()).await?;
        if revoked {
            self.keys
                .entries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|_, (k, _)| k.id != id_or_name && k.name != id_or_name);
        }
        Ok(revoked)
    }

    // ---- Telegram chats --------------------------------------------------------------------

    /// The phone number a chat is linked to, if any.
    pub async fn chat_link(&self, chat_id: i64) -> Result<Option<TelegramLink>, StorageError> {
        self.storage.find_telegram_link(chat_id).await
    }

    /// Links a chat to a phone number, unlinking every other chat from it ("one chat, one
    /// number"); how many other links went.
    pub async fn link_chat(&self, link: &TelegramLink) -> Result<u64, StorageError> {
        self.storage.link_telegram_chat_exclusively(link).await
    }

    /// A chat wrote to the bot: it has not blocked it (any more), so a linked chat marked
    /// blocked may be sent to again.
    pub async fn chat_wrote(&self, chat_id: i64) -> Result<(), StorageError> {
        if let Some(link) = self.storage.find_telegram_link(chat_id).await?
            && link.blocked_at.is_some()
        {
            self.storage
                .link_telegram_chat(&TelegramLink {
                    blocked_at: None,
                    ..link
                })
                .await?;
        }
        Ok(())
    }

    /// Unlinks a chat; false when it was not linked.
    pub async fn unlink_chat(&self, chat_id: i64) -> Result<bool, StorageError> {
        self.storage.unlink_telegram_chat(chat_id).await
    }

    /// A chat blocked the bot (403): nothing more is sent to it.
    pub async fn chat_blocked(&self, chat_id: i64) -> Result<(), StorageError> {
        self.storage
            .mark_telegram_chat_blocked(chat_id, now_ms())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_against_their_hash_only() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password("anything", "not a hash"));
    }

    #[test]
    fn generated_keys_keep_only_a_hash_and_a_prefix() {
        let (secret, record) = generate_api_key("shop", None);
        assert!(secret.starts_with(KEY_PREFIX));
        assert_eq!(secret.len(), KEY_PREFIX.len() + 40);
        assert_eq!(record.hash, sha256_hex(&secret));
        assert_eq!(record.prefix, secret[..10]);
        assert!(!format!("{record:?}").contains(&secret));
    }
}

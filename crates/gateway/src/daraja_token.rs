//! The Daraja access token, shared by every instance of a deployment through their database
//! (daraja's [`SharedTokenStore`]): Daraja invalidates a consumer key's previous token whenever
//! it issues a new one, so N instances that each keep their own token knock each other's out.
//!
//! * The current token is one setting, `daraja_token.<app>`, where `<app>` is a hash of the
//!   Daraja base URL and consumer key (one token per Daraja app, and the in-process simulators
//!   of `--sandbox` instances do not share). A lease, `daraja_token_refresh.<app>`, lets one
//!   instance at a time ask Daraja for the next token.
//! * The token is a secret: a valid one lets whoever holds it call Daraja as the business for up
//!   to an hour (STK Query, C2B URL registration, Pull Transactions). The database is shared by
//!   every instance, and its backups and replicas travel further, so the token is stored
//!   encrypted (AES-256-GCM) under a key derived (HKDF-SHA256) from the consumer secret, which is
//!   never in the database. Hashing is not an option: the instances must use the token. Its
//!   serial and times are bound to the ciphertext as associated data. A value that does not
//!   decrypt (the consumer secret changed) counts as no token.

use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, TimeZone as _, Utc};
use daraja::{DarajaClient, SharedToken, SharedTokenError, SharedTokenStore};
use mpesa_storage::Storage;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};

use crate::ids::new_id;

pub struct DatabaseTokenStore {
    storage: Arc<dyn Storage>,
    lease: String,
    /// This instance, as the lease's owner.
    owner: String,
    cipher: TokenCipher,
    /// The Daraja client's clock: the lease's `until` is a time on it.
    clock: Arc<dyn daraja::Clock>,
}

/// Encrypts the token for one setting, under a key derived from the consumer secret.
struct TokenCipher {
    setting: String,
    key: LessSafeKey,
    random: SystemRandom,
}

impl DatabaseTokenStore {
    /// The store for `client`'s Daraja app.
    pub fn for_client(storage: Arc<dyn Storage>, client: &DarajaClient) -> Self {
        let config = client.config();
        let app = hex::encode(
            &Sha256::new()
                .chain_update(client.base_url().as_str())
                .chain_update([0])
                .chain_update(config.consumer_key.expose_secret())
                .finalize()[..8],
        );
        DatabaseTokenStore {
            storage,
            lease: format!("daraja_token_refresh.{app}"),
            owner: new_id("tok"),
            clock: client.clock(),
            cipher: TokenCipher::new(
                format!("daraja_token.{app}"),
                &config.consumer_key,
                &config.consumer_secret,
            ),
        }
    }
}

impl TokenCipher {
    fn new(setting: String, consumer_key: &SecretString, consumer_secret: &SecretString) -> Self {
        TokenCipher {
            setting,
            key: derive_key(consumer_key, consumer_secret),
            random: SystemRandom::new(),
        }
    }

    fn associated_data(&self, serial: u64, refresh_at: i64, expires_at: i64) -> String {
        format!("{}|{serial}|{refresh_at}|{expires_at}", self.setting)
    }

    fn seal(&self, token: &SharedToken) -> Result<String, SharedTokenError> {
        let (refresh_at, expires_at) = (
            token.refresh_at.timestamp_millis(),
            token.expires_at.timestamp_millis(),
        );
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| SharedTokenError("no randomness for a nonce".into()))?;
        let mut sealed = token.value.expose_secret().as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.associated_data(token.serial, refresh_at, expires_at)),
                &mut sealed,
            )
            .map_err(|_| SharedTokenError("cannot encrypt the token".into()))?;
        let mut stored = nonce.to_vec();
        stored.extend_from_slice(&sealed);
        Ok(format!(
            "v1.{}.{refresh_at}.{expires_at}.{}",
            token.serial,
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(stored)
        ))
    }

    /// `None` for anything that does not decrypt under this app's key.
    fn open(&self, value: &str) -> Option<SharedToken> {
        let mut parts = value.split('.');
        let (Some("v1"), Some(serial), Some(refresh_at), Some(expires_at), Some(sealed), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let (serial, refresh_at, expires_at): (u64, i64, i64) = (
            serial.parse().ok()?,
            refresh_at.parse().ok()?,
            expires_at.parse().ok()?,
        );
        let mut stored = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(sealed)
            .ok()?;
        if stored.len() < NONCE_LEN {
            return None;
        }
        let mut sealed = stored.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&stored).ok()?;
        let plain = self
            .key
            .open_in_place(
                nonce,
                Aad::from(self.associated_data(serial, refresh_at, expires_at)),
                &mut sealed,
            )
            .ok()?;
        Some(SharedToken {
            value: SecretString::from(String::from_utf8(plain.to_vec()).ok()?),
            serial,
            refresh_at: Utc.timestamp_millis_opt(refresh_at).single()?,
            expires_at: Utc.timestamp_millis_opt(expires_at).single()?,
        })
    }
}

fn derive_key(consumer_key: &SecretString, consumer_secret: &SecretString) -> LessSafeKey {
    let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"mpesa-gateway daraja token v1");
    let info = [consumer_key.expose_secret().as_bytes()];
    let prk = salt.extract(consumer_secret.expose_secret().as_bytes());
    let okm = prk
        .expand(&info, &AES_256_GCM)
        .expect("AES-256 key length is within HKDF-SHA256's limit");
    LessSafeKey::new(UnboundKey::from(okm))
}

fn store_error(e: mpesa_storage::StorageError) -> SharedTokenError {
    SharedTokenError(e.to_string())
}

#[async_trait::async_trait]
impl SharedTokenStore for DatabaseTokenStore {
    async fn load(&self) -> Result<Option<SharedToken>, SharedTokenError> {
        let value = self
            .storage
            .get_setting(&self.cipher.setting)
            .await
            .map_err(store_error)?;
        Ok(value.as_deref().and_then(|v| {
            let opened = self.cipher.open(v);
            if opened.is_none() {
                tracing::warn!("the stored Daraja token does not decrypt (consumer secret changed?); ignoring it");
            }
            opened
        }))
    }

    async fn begin_refresh(&self, until: DateTime<Utc>) -> Result<bool, SharedTokenError> {
        self.storage
            .acquire_lease(
                &self.lease,
                &self.owner,
                self.clock.now().timestamp_millis(),
                until.timestamp_millis(),
            )
            .await
            .map_err(store_error)
    }

    async fn publish(&self, token: &SharedToken) -> Result<(), SharedTokenError> {
        let sealed = self.cipher.seal(token)?;
        self.storage
            .put_setting(
                &self.cipher.setting,
                &sealed,
                self.clock.now().timestamp_millis(),
            )
            .await
            .map_err(store_error)
    }

    async fn end_refresh(&self) -> Result<(), SharedTokenError> {
        self.storage
            .release_lease(&self.lease, &self.owner)
            .await
            .map_err(store_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(secret: &str) -> TokenCipher {
        TokenCipher::new(
            "daraja_token.test".into(),
            &SecretString::from("key"),
            &SecretString::from(secret),
        )
    }

    #[test]
    fn the_token_is_stored_encrypted_and_bound_to_its_serial_and_times() {
        let s = store("secret");
        let token = SharedToken {
            value: SecretString::from("SaMpLeT0kEn0000000000000000"),
            serial: 7,
            refresh_at: Utc.timestamp_millis_opt(1_000_000).unwrap(),
            expires_at: Utc.timestamp_millis_opt(2_000_000).unwrap(),
        };
        let sealed = s.seal(&token).unwrap();
        assert!(!sealed.contains("SaMpLeT0kEn"), "{sealed}");
        let opened = s.open(&sealed).unwrap();
        assert_eq!(
            (
                opened.value.expose_secret(),
                opened.serial,
                opened.expires_at
            ),
            ("SaMpLeT0kEn0000000000000000", 7, token.expires_at)
        );
        assert_ne!(sealed, s.seal(&token).unwrap(), "a fresh nonce each time");
        // Another serial or time with the same ciphertext: refused.
        let forged = sealed.replacen("v1.7.", "v1.8.", 1);
        assert!(s.open(&forged).is_none());
        // Another consumer secret: cannot read it.
        assert!(store("other secret").open(&sealed).is_none());
        assert!(s.open("v1.1.2.3.!!!").is_none());
        assert!(s.open("").is_none());
    }
}

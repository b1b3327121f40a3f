//! Idempotency keys at the service: the one mechanism every operation that creates a record
//! on a client's request uses (payments now; refunds, payouts and payment links the same way).
//!
//! A door turns the client's key and request into an [`IdempotencyKey`]; the operation claims it
//! in the transaction that creates its record (storage's `store::idempotency::claim`), so of
//! concurrent identical requests at most one creates anything; once the operation has its answer
//! it [`Idempotency::remember`]s it, and a retry is given that answer again. A retry that comes
//! while the first request has no answer yet is resolved by the operation itself (a payment
//! that has left `initiated` is its own answer; see `Payments::start`).

use std::sync::Arc;

use mpesa_storage::{IdempotencyClaim, KeyClaim, Storage, StorageError, StoredResponse};
use serde::Serialize;

use crate::ids::sha256_hex;

/// A client's idempotency key for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// Whose keys it is among: an API key's id, or a door's own scope
    /// ([`TELEGRAM_IDEMPOTENCY_SCOPE`]).
    pub scope: String,
    pub key: String,
    /// SHA-256 of the request's canonical form: the same key with another request is refused.
    pub request_hash: String,
}

/// The owner of the Telegram bot's idempotency keys (derived from update ids), in the place
/// of an API key id (those are `key_…`).
pub const TELEGRAM_IDEMPOTENCY_SCOPE: &str = "telegram-bot";

impl IdempotencyKey {
    /// `canonical` is the request as the operation understood it (the same request written
    /// differently is the same request).
    pub fn new(
        scope: impl Into<String>,
        key: impl Into<String>,
        canonical: &serde_json::Value,
    ) -> Self {
        IdempotencyKey {
            scope: scope.into(),
            key: key.into(),
            request_hash: sha256_hex(canonical.to_string()),
        }
    }

    /// A key of an API client for an operation other than starting a payment: `operation`
    /// (`"refunds"`, `"payouts"`…) keeps a key used for one kind of record apart from the same
    /// key used for another. Payments keep the bare API key id, as they always have.
    pub fn for_operation(
        api_key_id: &str,
        operation: &str,
        key: impl Into<String>,
        canonical: &serde_json::Value,
    ) -> Self {
        Self::new(format!("{api_key_id}:{operation}"), key, canonical)
    }

    /// The claim to store with the record, made at `now`.
    pub fn claim(&self, now: i64) -> IdempotencyClaim {
        IdempotencyClaim {
            api_key_id: self.scope.clone(),
            key: self.key.clone(),
            request_hash: self.request_hash.clone(),
            created_at: now,
        }
    }
}

/// An answer to remember: the status the door gave and its JSON body.
pub fn answer(status: u16, body: &impl Serialize) -> StoredResponse {
    StoredResponse {
        status,
        body: serde_json::to_string(body).unwrap_or_default(),
    }
}

/// Looking up and remembering answers.
#[derive(Clone)]
pub struct Idempotency {
    storage: Arc<dyn Storage>,
}

impl Idempotency {
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Idempotency { storage }
    }

    /// What this request finds under its key without claiming it: `None` when the key is new.
    pub async fn look_up(&self, key: &IdempotencyKey) -> Result<Option<KeyClaim>, StorageError> {
        Ok(self
            .storage
            .find_idempotency_key(&key.scope, &key.key)
            .await?
            .map(|record| record.against(&key.request_hash)))
    }

    /// Stores the answer given, so a retry gets it again. A failure is logged, not returned:
    /// the record is stored either way, and a retry is resolved from it.
    pub async fn remember(&self, key: &IdempotencyKey, answer: &StoredResponse) {
        self.remember_in(&key.scope, &key.key, answer).await
    }

    /// [`Idempotency::remember`] for a key given by its scope and text.
    pub async fn remember_in(&self, scope: &str, key: &str, answer: &StoredResponse) {
        if let Err(error) = self
            .storage
            .save_idempotent_response(scope, key, answer)
            .await
        {
            tracing::warn!(%error, "could not store the idempotent answer");
        }
    }
}

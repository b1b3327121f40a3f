//! The Telegram bot's bookkeeping in the database: the first update it has not handled yet (per
//! bot token, so a new token starts afresh), which instance handles an update now (a named lease
//! per update, so that two instances given one update at once do not both handle it), and which
//! instance polls Telegram (a named lease, so that one instance polls when several share a
//! database). The bot and its poller keep it through these operations, never through storage.

use std::sync::Arc;
use std::time::Duration;

use mpesa_storage::{Storage, StorageError};

use crate::ids::now_ms;

/// The poller's lease's name in storage.
pub const POLL_LEASE: &str = "telegram-poller";

/// The bot's bookkeeping: cheap to clone.
#[derive(Clone)]
pub struct BotLedger {
    storage: Arc<dyn Storage>,
}

impl BotLedger {
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        BotLedger { storage }
    }

    fn offset_key(bot_id: &str) -> String {
        format!("telegram_update_offset:{bot_id}")
    }

    /// The first update of this bot not handled yet, as stored.
    pub async fn next_update(&self, bot_id: &str) -> Result<Option<i64>, StorageError> {
        Ok(self
            .storage
            .get_setting(&Self::offset_key(bot_id))
            .await?
            .and_then(|v| v.parse().ok()))
    }

    /// Update `update_id` is handled: the next one to ask for is the one after it.
    pub async fn handled(&self, bot_id: &str, update_id: i64) -> Result<(), StorageError> {
        self.storage
            .put_setting(
                &Self::offset_key(bot_id),
                &(update_id + 1).to_string(),
                now_ms(),
            )
            .await
    }

    fn update_claim(bot_id: &str, update_id: i64) -> String {
        format!("telegram-update:{bot_id}:{update_id}")
    }

    /// Takes or renews `owner`'s claim on handling update `update_id` for `lease`; false while
    /// another instance's claim on it is live.
    pub async fn claim_update(
        &self,
        bot_id: &str,
        update_id: i64,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, StorageError> {
        let now = now_ms();
        self.storage
            .acquire_lease(
                &Self::update_claim(bot_id, update_id),
                owner,
                now,
                now + lease.as_millis() as i64,
            )
            .await
    }

    /// Gives `owner`'s claim on update `update_id` up (handled, or failed and to come again).
    pub async fn release_update(
        &self,
        bot_id: &str,
        update_id: i64,
        owner: &str,
    ) -> Result<(), StorageError> {
        self.storage
            .release_lease(&Self::update_claim(bot_id, update_id), owner)
            .await
    }

    /// Takes or renews the poller's lease for `owner` for `lease`; true when `owner` holds it
    /// afterwards.
    pub async fn take_poll_lease(
        &self,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, StorageError> {
        let now = now_ms();
        self.storage
            .acquire_lease(POLL_LEASE, owner, now, now + lease.as_millis() as i64)
            .await
    }

    /// Gives the poller's lease up (graceful stop), so another instance polls at once.
    pub async fn release_poll_lease(&self, owner: &str) -> Result<(), StorageError> {
        self.storage.release_lease(POLL_LEASE, owner).await
    }
}

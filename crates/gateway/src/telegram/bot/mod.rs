//! The bot: what each update does. Customers link their number by sharing their own contact,
//! pay with `/pay AMOUNT [REFERENCE]` (the same [`Payments`] path as the HTTP API) and watch one
//! status message move to its final state; the admin chat gets `/stats` and `/pending`.
//!
//! Updates come from the long-polling [`super::poller`] or the [`super::webhook_receiver`] route; both
//! hand them to [`Bot::process`], which handles each update once: an update whose id is below
//! the stored offset was handled already and is skipped, and the offset moves past an update
//! only once it is handled. A restart between the two (the one window left) hands the update
//! over again, and `/pay` picks up where it stopped: the payment's idempotency key is derived
//! from the update id, so there is still one payment, one push and one status message. Several
//! instances sharing a database claim an update before handling it, so one handles it at a time.
//!
//! A module a job: [`dispatch`] (which command a message is, who may use it), [`linking`] (a
//! chat and its phone number), [`paying`] (`/pay` through [`Payments::start`], the status
//! message and its button), [`receipts`] (`/paid CODE`: a receipt checked with Safaricom), [`history`] (`/status`, `/history`), [`admin`] (`/stats`,
//! `/pending` in the admin chat), [`text`] (how amounts, phones and payments are written).
//! The payment rules (one open prompt per phone, stale requests, idempotency) are the payment
//! service's, not the bot's.

mod admin;
mod dispatch;
mod history;
mod linking;
mod paying;
mod receipts;
mod text;

use std::sync::{Arc, OnceLock};

use mpesa_domain::AmountBounds;
use mpesa_storage::StorageError;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::Mutex;

use super::api::{BotApi, BotApiError, SendMessage};
use super::rate_limit::ChatRateLimiter;
use super::updates::{Update, UpdateKind};
use crate::accounts::Accounts;
use crate::bot_ledger::BotLedger;
use crate::config::TelegramSettings;
use crate::metrics::Metrics;
use crate::payments::{Payments, StatusMessages};

/// A failure that means "not handled: hand me this update again later" (the database or
/// Telegram is unreachable). Anything else is answered, or logged, and counts as handled.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    #[error("database: {0}")]
    Storage(#[from] StorageError),
    #[error("Telegram: {0}")]
    Telegram(#[from] BotApiError),
    #[error("update {0} is being handled by another instance")]
    HandledElsewhere(i64),
}

impl BotError {
    /// How long to wait before the update comes again, when that is known: what Telegram said,
    /// or a short while for an update another instance handles (it is soon handled, given up, or
    /// its claim lapses; a growing backoff would hold the bot up longer than the claim does).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            BotError::Telegram(BotApiError::TooManyRequests { retry_after, .. }) => {
                Some(*retry_after)
            }
            BotError::HandledElsewhere(_) => Some(std::time::Duration::from_secs(2)),
            _ => None,
        }
    }
}

/// Whether trying again later may succeed (as opposed to Telegram refusing this request).
fn is_transient(error: &BotApiError) -> bool {
    !matches!(
        error,
        BotApiError::BadRequest { .. } | BotApiError::Forbidden { .. }
    )
}

/// The services the bot translates to and from.
pub struct BotServices {
    pub accounts: Accounts,
    pub ledger: BotLedger,
    pub status_messages: StatusMessages,
    pub payments: Payments,
    /// `/paid CODE`: a receipt checked with Safaricom.
    pub receipts: crate::money_out::ReceiptChecks,
    pub metrics: Arc<Metrics>,
    /// This instance's id: it claims the updates it handles under it.
    pub instance_id: String,
}

pub struct Bot {
    pub api: BotApi,
    /// Chat links (a chat and its phone number).
    accounts: Accounts,
    /// Which updates were handled.
    ledger: BotLedger,
    /// Each payment's status message.
    status_messages: StatusMessages,
    payments: Payments,
    /// `/paid CODE`: a receipt checked with Safaricom.
    receipts: crate::money_out::ReceiptChecks,
    metrics: Arc<Metrics>,
    admin_chat_id: Option<i64>,
    amount_bounds: AmountBounds,
    /// The bot's id (the token's first part): keys its offset, so a new token starts afresh.
    bot_id: String,
    /// From `getMe`: commands addressed to another bot (`/pay@other_bot`) are not ours.
    username: OnceLock<String>,
    /// Webhook mode: the secret Telegram sends back, and where it posts.
    pub webhook: Option<(SecretString, url::Url)>,
    limiter: ChatRateLimiter,
    /// One update at a time in this process (webhook requests may overlap on a retry).
    serial: Mutex<()>,
    /// Claims updates across instances (see [`Bot::process`]) for this long unrenewed: the
    /// poller's lease (`TELEGRAM_POLL_LEASE`), which an instance that stopped holds as long.
    instance_id: String,
    update_claim: std::time::Duration,
}

impl std::fmt::Debug for Bot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bot")
            .field("bot_id", &self.bot_id)
            .finish_non_exhaustive()
    }
}

impl Bot {
    pub fn new(
        settings: &TelegramSettings,
        webhook_url: Option<url::Url>,
        services: BotServices,
    ) -> Result<Bot, BotApiError> {
        let api = BotApi::new(&settings.api_base, settings.bot_token.clone())?;
        let bot_id = settings
            .bot_token
            .expose_secret()
            .split_once(':')
            .map(|(id, _)| id)
            .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
            .unwrap_or("bot")
            .to_owned();
        Ok(Bot {
            api,
            amount_bounds: services.payments.amount_bounds(),
            accounts: services.accounts,
            ledger: services.ledger,
            status_messages: services.status_messages,
            payments: services.payments,
            receipts: services.receipts,
            metrics: services.metrics,
            admin_chat_id: settings.admin_chat_id,
            bot_id,
            username: OnceLock::new(),
            webhook: settings.webhook_secret.clone().zip(webhook_url),
            limiter: ChatRateLimiter::default(),
            serial: Mutex::new(()),
            instance_id: services.instance_id,
            update_claim: settings.poll_lease,
        })
    }

    /// Asks Telegram who the bot is (`getMe`), once.
    pub async fn identify(&self) -> Result<(), BotApiError> {
        if self.username.get().is_none() {
            let me = self.api.get_me().await?;
            let _ = self.username.set(me.username.unwrap_or_default());
            tracing::info!(bot_id = %self.bot_id, username = ?self.username.get(), "Telegram bot identified");
        }
        Ok(())
    }

    /// The first update not handled yet, as stored.
    pub async fn stored_offset(&self) -> Result<Option<i64>, StorageError> {
        self.ledger.next_update(&self.bot_id).await
    }

    /// Handles one update once (see the module comment). `Err` means it was not handled and
    /// must come again.
    ///
    /// Across instances an update is claimed first. Two instances can be given one update at
    /// once (a poller that lost its lease in the middle of a batch and the one that took it over,
    /// a webhook delivered again while the first delivery is handled); both would find no status
    /// message for a `/pay`, and both would send one and push. The one that finds the other's
    /// claim live hands the update back to come again; by then it is handled (skipped by the
    /// offset), given up (its claim released) or abandoned (its claim lapsed, taken over).
    pub async fn process(&self, update: Update) -> Result<(), BotError> {
        let _one_at_a_time = self.serial.lock().await;
        let update_id = update.update_id;
        let (bot, me) = (&self.bot_id, &self.instance_id);
        if !self
            .ledger
            .claim_update(bot, update_id, me, self.update_claim)
            .await?
        {
            tracing::info!(
                update_id,
                "update being handled by another instance; it will come again"
            );
            return Err(BotError::HandledElsewhere(update_id));
        }
        let handled = self.process_claimed(update).await;
        if let Err(error) = self.ledger.release_update(bot, update_id, me).await {
            tracing::warn!(update_id, %error, "could not release the claim on an update; it lapses");
        }
        handled
    }

    async fn process_claimed(&self, update: Update) -> Result<(), BotError> {
        let update_id = update.update_id;
        // Read under the claim: an instance that handled it and let go has moved the offset.
        let offset = self.stored_offset().await?;
        if offset.is_some_and(|o| update_id < o) {
            tracing::debug!(update_id, "update handled before; skipped");
            return Ok(());
        }
        self.keep_claim_while(update_id, self.handle(update))
            .await?;
        self.ledger.handled(&self.bot_id, update_id).await?;
        Ok(())
    }

    /// Runs `work` to its end, renewing the claim on the update meanwhile. Handling is not cut
    /// short when the claim cannot be renewed (a push half sent is worse than a late stop).
    async fn keep_claim_while<T>(&self, update_id: i64, work: impl Future<Output = T>) -> T {
        tokio::pin!(work);
        let mut renew = tokio::time::interval(self.update_claim / 3);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        renew.tick().await;
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = renew.tick() => {
                    let renewed = self
                        .ledger
                        .claim_update(&self.bot_id, update_id, &self.instance_id, self.update_claim)
                        .await;
                    if !matches!(renewed, Ok(true)) {
                        tracing::warn!(update_id, ?renewed, "the claim on an update could not be renewed while it was handled");
                    }
                }
            }
        }
    }

    fn count(&self, what: &str) {
        self.metrics
            .inc("mpesa_gateway_telegram_updates_total", &[("kind", what)]);
    }

    async fn handle(&self, update: Update) -> Result<(), BotError> {
        match update.kind {
            UpdateKind::Message(m) => self.on_message(update.update_id, m).await,
            UpdateKind::CallbackQuery(q) => self.on_button(q).await,
            UpdateKind::Other => {
                self.count("other");
                Ok(())
            }
        }
    }

    /// Sends a message; a chat that blocked the bot is recorded, other refusals are logged.
    async fn reply(&self, chat: i64, html: String, markup: Option<Value>) -> Result<(), BotError> {
        let mut message = SendMessage::html(chat.into(), html);
        message.reply_markup = markup;
        match self.api.send_message(&message).await {
            Ok(_) => Ok(()),
            Err(error) => self.telegram_failed(chat, error).await,
        }
    }

    /// What a Telegram error while answering means: try the update again later, or give up
    /// on this answer (recording a chat that blocked the bot).
    async fn telegram_failed(&self, chat: i64, error: BotApiError) -> Result<(), BotError> {
        match error {
            BotApiError::Forbidden { .. } => {
                tracing::info!(chat_id = chat, "the chat blocked the bot; recorded");
                self.accounts.chat_blocked(chat).await?;
                Ok(())
            }
            error if is_transient(&error) => Err(error.into()),
            error => {
                tracing::warn!(chat_id = chat, %error, "Telegram refused the bot's answer");
                Ok(())
            }
        }
    }
}

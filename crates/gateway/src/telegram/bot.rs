//! The bot: what each update does. Customers link their number by sharing their own contact,
//! pay with `/pay AMOUNT [REFERENCE]` (the same [`Payments`] path as the HTTP API) and watch one
//! status message move to its final state; the admin chat gets `/stats` and `/pending`.
//!
//! Updates come from the long-polling [`super::poller`] or the [`super::webhook`] route; both
//! hand them to [`Bot::process`], which handles each update once: an update whose id is below
//! the stored offset was handled already and is skipped, and the offset moves past an update
//! only once it is handled. A restart between the two (the one window left) hands the update
//! over again, and `/pay` picks up where it stopped: the payment's idempotency key is derived
//! from the update id, so there is still one payment, one push and one status message.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use mpesa_domain::{
    AccountReference, Amount, AmountBounds, AmountError, Description, Msisdn, PaymentStatus,
};
use mpesa_storage::{
    PageRequest, Payment, PaymentFilter, PaymentSource, Storage, StorageError, TelegramLink,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::api::{AnswerCallbackQuery, BotApi, BotApiError, SendMessage};
use super::escape_html;
use super::rate_limit::{ChatRateLimiter, Verdict};
use super::status::{self, RefreshError, STATUS_BUTTON};
use super::updates::{CallbackQuery, Contact, Message, Update, UpdateKind, User};
use crate::config::TelegramSettings;
use crate::ids::{eat_display, now_ms, random_token, sha256_hex};
use crate::metrics::Metrics;
use crate::outbox::message::{clip, ksh};
use crate::payments::{
    CreateOutcome, NewPaymentRequest, Origin, PaymentError, Payments, PushOutcome,
};

/// A `/pay` older than this (sent while the bot was down, say) starts no payment: a prompt
/// for a request the customer made long ago would surprise them.
const PAY_REQUEST_FRESH_FOR_SECS: i64 = 10 * 60;
/// How many payments `/history` lists.
const HISTORY_LEN: u32 = 5;
/// How many payments `/pending` lists.
const PENDING_LEN: usize = 15;

/// A failure that means "not handled: hand me this update again later" (the database or
/// Telegram is unreachable). Anything else is answered, or logged, and counts as handled.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    #[error("database: {0}")]
    Storage(#[from] StorageError),
    #[error("Telegram: {0}")]
    Telegram(#[from] BotApiError),
}

impl BotError {
    /// When Telegram said how long to wait.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            BotError::Telegram(BotApiError::TooManyRequests { retry_after, .. }) => {
                Some(*retry_after)
            }
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

pub struct Bot {
    pub api: BotApi,
    storage: Arc<dyn Storage>,
    payments: Payments,
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
}

impl std::fmt::Debug for Bot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bot")
            .field("bot_id", &self.bot_id)
            .finish_non_exhaustive()
    }
}

/// What a message asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Command<'a> {
    Start,
    Help,
    Pay(&'a str),
    Status,
    History,
    Unlink,
    Stats,
    Pending,
    Unknown(&'a str),
}

impl Bot {
    pub fn new(
        settings: &TelegramSettings,
        webhook_url: Option<url::Url>,
        storage: Arc<dyn Storage>,
        payments: Payments,
        metrics: Arc<Metrics>,
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
            amount_bounds: payments.amount_bounds(),
            storage,
            payments,
            metrics,
            admin_chat_id: settings.admin_chat_id,
            bot_id,
            username: OnceLock::new(),
            webhook: settings.webhook_secret.clone().zip(webhook_url),
            limiter: ChatRateLimiter::default(),
            serial: Mutex::new(()),
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

    /// The settings key of the next update to ask for.
    fn offset_key(&self) -> String {
        format!("telegram_update_offset:{}", self.bot_id)
    }

    /// The first update not handled yet, as stored.
    pub async fn stored_offset(&self) -> Result<Option<i64>, StorageError> {
        Ok(self
            .storage
            .get_setting(&self.offset_key())
            .await?
            .and_then(|v| v.parse().ok()))
    }

    /// Handles one update once (see the module comment). `Err` means it was not handled and
    /// must come again.
    pub async fn process(&self, update: Update) -> Result<(), BotError> {
        let _one_at_a_time = self.serial.lock().await;
        let offset = self.stored_offset().await?;
        if offset.is_some_and(|o| update.update_id < o) {
            tracing::debug!(
                update_id = update.update_id,
                "update handled before; skipped"
            );
            return Ok(());
        }
        let update_id = update.update_id;
        self.handle(update).await?;
        self.storage
            .put_setting(&self.offset_key(), &(update_id + 1).to_string(), now_ms())
            .await?;
        Ok(())
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

    // ---- messages ---------------------------------------------------------------------------

    async fn on_message(&self, update_id: i64, m: Message) -> Result<(), BotError> {
        let Some(from) = m.from.clone().filter(|u| !u.is_bot) else {
            self.count("other");
            return Ok(());
        };
        let chat = m.chat.id;
        let command = m.text.as_deref().and_then(|t| self.parse_command(t));
        // In groups the bot answers commands only (and ignores other bots' commands).
        if !m.chat.is_private() && command.is_none() {
            self.count("other");
            return Ok(());
        }
        match self.limiter.check(chat, Instant::now()) {
            Verdict::Allow => {}
            Verdict::Warn { retry_after } => {
                self.count("rate_limited");
                let text = format!(
                    "⏱ Too many messages. Please wait {} seconds and try again.",
                    retry_after.as_secs().max(1)
                );
                return self.reply(chat, text, None).await;
            }
            Verdict::Ignore => {
                self.count("rate_limited");
                return Ok(());
            }
        }
        // A chat that writes to the bot has not blocked it (any more).
        if let Some(link) = self.storage.find_telegram_link(chat).await?
            && link.blocked_at.is_some()
        {
            self.storage
                .link_telegram_chat(&TelegramLink {
                    blocked_at: None,
                    ..link
                })
                .await?;
        }
        if let Some(contact) = &m.contact {
            self.count("contact");
            return self.on_contact(&m, &from, contact).await;
        }
        let Some(command) = command else {
            self.count("text");
            return self
                .reply(
                    chat,
                    "Send <code>/pay AMOUNT</code> to pay with M-Pesa, or /help to see what I can do."
                        .into(),
                    None,
                )
                .await;
        };
        let is_admin_chat = Some(chat) == self.admin_chat_id;
        match command {
            Command::Stats | Command::Pending if !is_admin_chat => {
                self.count("not_allowed");
                self.reply(
                    chat,
                    "⛔ That command is for the shop's admin chat only.".into(),
                    None,
                )
                .await
            }
            Command::Stats => {
                self.count("stats");
                self.stats(chat).await
            }
            Command::Pending => {
                self.count("pending");
                self.pending(chat).await
            }
            Command::Help => {
                self.count("help");
                self.reply(chat, help_text(is_admin_chat), None).await
            }
            Command::Unknown(name) => {
                self.count("unknown_command");
                let text = format!(
                    "I don't know /{}. Send /help to see what I can do.",
                    escape_html(&clip(name, 32))
                );
                self.reply(chat, text, None).await
            }
            _ if !m.chat.is_private() => {
                self.count("group");
                self.reply(
                    chat,
                    "Please message me in a private chat to link your number and pay.".into(),
                    None,
                )
                .await
            }
            Command::Start => {
                self.count("start");
                self.start(chat).await
            }
            Command::Pay(args) => {
                self.count("pay");
                self.pay(update_id, &m, &from, args).await
            }
            Command::Status => {
                self.count("status");
                self.status(chat).await
            }
            Command::History => {
                self.count("history");
                self.history(chat).await
            }
            Command::Unlink => {
                self.count("unlink");
                self.unlink(chat).await
            }
        }
    }

    /// `/name[@bot] args`; `None` for text that is not a command, or a command for another bot.
    fn parse_command<'a>(&self, text: &'a str) -> Option<Command<'a>> {
        let text = text.trim_start();
        let rest = text.strip_prefix('/')?;
        let (word, args) = match rest.find(char::is_whitespace) {
            Some(i) => (&rest[..i], rest[i..].trim()),
            None => (rest, ""),
        };
        let (name, addressee) = match word.split_once('@') {
            Some((name, bot)) => (name, Some(bot)),
            None => (word, None),
        };
        if let (Some(bot), Some(me)) = (addressee, self.username.get())
            && !me.is_empty()
            && !bot.eq_ignore_ascii_case(me)
        {
            return None;
        }
        if name.is_empty() {
            return None;
        }
        Some(match name.to_ascii_lowercase().as_str() {
            "start" => Command::Start,
            "help" => Command::Help,
            "pay" => Command::Pay(args),
            "status" => Command::Status,
            "history" => Command::History,
            "unlink" => Command::Unlink,
            "stats" => Command::Stats,
            "pending" => Command::Pending,
            _ => Command::Unknown(name),
        })
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
                self.storage
                    .mark_telegram_chat_blocked(chat, now_ms())
                    .await?;
                Ok(())
            }
            error if is_transient(&error) => Err(error.into()),
            error => {
                tracing::warn!(chat_id = chat, %error, "Telegram refused the bot's answer");
                Ok(())
            }
        }
    }

    async fn start(&self, chat: i64) -> Result<(), BotError> {
        if let Some(link) = self.storage.find_telegram_link(chat).await? {
            let text = format!(
                "👋 Welcome back! Your number <b>{}</b> is linked.\n\
                 Pay with <code>/pay AMOUNT [REFERENCE]</code>, e.g. <code>/pay 100</code>.\n\
                 /help shows everything I can do.",
                display_phone(&link.phone)
            );
            return self.reply(chat, text, None).await;
        }
        let text = "👋 <b>Welcome!</b> Pay with M-Pesa right here in the chat.\n\n\
                    First link your phone number: tap <b>📱 Share my phone number</b> below. \
                    Then send <code>/pay AMOUNT</code> and confirm with your M-Pesa PIN."
            .to_owned();
        self.reply(chat, text, Some(share_contact_keyboard())).await
    }

    async fn on_contact(
        &self,
        m: &Message,
        from: &User,
        contact: &Contact,
    ) -> Result<(), BotError> {
        let chat = m.chat.id;
        if !m.chat.is_private() {
            return Ok(());
        }
        if contact.user_id != Some(from.id) {
            tracing::info!(
                chat_id = chat,
                "refused a contact that is not the sender's own"
            );
            return self
                .reply(
                    chat,
                    "That is someone else's contact. To link <b>your</b> number, tap \
                     <b>📱 Share my phone number</b> below."
                        .into(),
                    Some(share_contact_keyboard()),
                )
                .await;
        }
        let phone = match Msisdn::parse(&contact.phone_number) {
            Ok(phone) => phone,
            Err(_) => {
                return self
                    .reply(
                        chat,
                        "M-Pesa needs a Kenyan Safaricom number (07… or 01…), and the number \
                         of this Telegram account is not one. Nothing was linked."
                            .into(),
                        Some(json!({ "remove_keyboard": true })),
                    )
                    .await;
            }
        };
        let removed = self
            .storage
            .link_telegram_chat_exclusively(&TelegramLink {
                chat_id: chat,
                user_id: from.id,
                phone: phone.as_str().to_owned(),
                linked_at: now_ms(),
                blocked_at: None,
            })
            .await?;
        tracing::info!(chat_id = chat, phone = %phone.masked(), unlinked_elsewhere = removed, "Telegram chat linked");
        let text = format!(
            "✅ Linked to <b>{}</b>.\nPay with <code>/pay AMOUNT [REFERENCE]</code>, e.g. \
             <code>/pay 100</code>; you will get the M-Pesa prompt on this phone.",
            display_phone(phone.as_str())
        );
        self.reply(chat, text, Some(json!({ "remove_keyboard": true })))
            .await
    }

    async fn unlink(&self, chat: i64) -> Result<(), BotError> {
        let text = if self.storage.unlink_telegram_chat(chat).await? {
            tracing::info!(chat_id = chat, "Telegram chat unlinked");
            "Your number is no longer linked to this chat. Send /start to link it again."
        } else {
            "No number is linked to this chat. Send /start to link one."
        };
        self.reply(chat, text.into(), Some(json!({ "remove_keyboard": true })))
            .await
    }

    async fn status(&self, chat: i64) -> Result<(), BotError> {
        let Some(link) = self.storage.find_telegram_link(chat).await? else {
            return self.reply(chat, not_linked_text(), None).await;
        };
        let latest = self.payments_of(&link.phone, None, 1).await?;
        let mut text = format!("📱 Linked number: <b>{}</b>", display_phone(&link.phone));
        match latest.first() {
            Some(p) => {
                text.push_str("\n\nYour latest payment:\n");
                text.push_str(&payment_line(p));
            }
            None => text.push_str("\n\nNo payments yet. Send <code>/pay AMOUNT</code> to pay."),
        }
        self.reply(chat, text, None).await
    }

    async fn history(&self, chat: i64) -> Result<(), BotError> {
        let Some(link) = self.storage.find_telegram_link(chat).await? else {
            return self.reply(chat, not_linked_text(), None).await;
        };
        let payments = self.payments_of(&link.phone, None, HISTORY_LEN).await?;
        let text = if payments.is_empty() {
            "No payments yet. Send <code>/pay AMOUNT</code> to pay.".to_owned()
        } else {
            let mut lines = vec![format!("<b>Your last {} payments</b>", payments.len())];
            lines.extend(payments.iter().map(payment_line));
            lines.join("\n")
        };
        self.reply(chat, text, None).await
    }

    async fn payments_of(
        &self,
        phone: &str,
        status: Option<PaymentStatus>,
        limit: u32,
    ) -> Result<Vec<Payment>, StorageError> {
        Ok(self
            .storage
            .list_payments(
                &PaymentFilter {
                    phone: Some(phone.to_owned()),
                    status,
                    ..Default::default()
                },
                &PageRequest {
                    limit,
                    cursor: None,
                },
            )
            .await?
            .items)
    }

    // ---- paying -----------------------------------------------------------------------------

    async fn pay(
        &self,
        update_id: i64,
        m: &Message,
        from: &User,
        args: &str,
    ) -> Result<(), BotError> {
        let chat = m.chat.id;
        let (amount_text, reference_text) = match args.split_once(char::is_whitespace) {
            Some((a, r)) => (a, r.trim()),
            None => (args, ""),
        };
        if amount_text.is_empty() {
            return self
                .reply(
                    chat,
                    "How much? Send <code>/pay AMOUNT [REFERENCE]</code>, e.g. \
                     <code>/pay 100</code> or <code>/pay 250 INV42</code>."
                        .into(),
                    None,
                )
                .await;
        }
        let amount = match parse_amount(amount_text, self.amount_bounds) {
            Ok(amount) => amount,
            Err(why) => return self.reply(chat, why, None).await,
        };
        let reference = if reference_text.is_empty() {
            AccountReference::parse(&format!("PAY{}", random_token(9).to_ascii_uppercase()))
                .expect("a generated reference is valid")
        } else {
            match AccountReference::parse(reference_text) {
                Ok(r) => r,
                Err(e) => {
                    let text = format!(
                        "That reference can't be used: it {e}.\n\
                         A reference is 1 to 12 letters, digits, spaces or <code>- _ . / : +</code>.\n\
                         You sent: <code>{}</code>",
                        escape_html(&clip(reference_text, 40))
                    );
                    return self.reply(chat, text, None).await;
                }
            }
        };
        let Some(link) = self.storage.find_telegram_link(chat).await? else {
            return self.reply(chat, not_linked_text(), None).await;
        };
        let phone = Msisdn::parse(&link.phone).map_err(|_| {
            StorageError::Corrupt(format!(
                "Telegram link of chat {chat} holds an invalid number"
            ))
        })?;
        // One payment at a time: another one to this number still waiting blocks a new one
        // (unless it is this very update's, handed over again after a restart).
        let mut resuming = false;
        for status in [PaymentStatus::Pending, PaymentStatus::Initiated] {
            let Some(open) = self
                .payments_of(phone.as_str(), Some(status), 1)
                .await?
                .into_iter()
                .next()
            else {
                continue;
            };
            if started_by_update(&open, update_id) == Some(true) {
                resuming = true;
            } else {
                let text = format!(
                    "⏳ A payment is already in progress: <b>{}</b>, reference {}.\n\
                     Finish it on your phone (or let it expire) before starting another one.",
                    ksh(open.amount.shillings()),
                    escape_html(&open.reference)
                );
                return self.reply(chat, text, None).await;
            }
        }
        if !resuming && m.date > 0 && now_ms() / 1000 - m.date > PAY_REQUEST_FRESH_FOR_SECS {
            tracing::info!(update_id, chat_id = chat, "a stale /pay was not acted on");
            return self
                .reply(
                    chat,
                    "⌛ That /pay was sent a while ago and was not started. Send it again to pay now."
                        .into(),
                    None,
                )
                .await;
        }
        // `clip` adds an ellipsis: 99 characters and it, within the 100 a description may have.
        let description = Description::parse(&clip(
            &format!("Telegram: {}", printable(&from.first_name)),
            99,
        ))
        .unwrap_or_else(|_| Description::parse("Telegram payment").expect("valid"));
        let request_hash = sha256_hex(
            json!({ "chat": chat, "amount": amount.shillings(), "reference": reference_text })
                .to_string(),
        );
        let request = NewPaymentRequest {
            phone,
            amount,
            reference,
            description,
            customer_email: None,
            telegram_chat_id: Some(chat),
            metadata: Some(json!({ "telegram": {
                "bot_id": self.bot_id, "update_id": update_id, "chat_id": chat, "user_id": from.id,
            }})),
            payment_link_id: None,
        };
        let origin = Origin {
            source: PaymentSource::Telegram,
            api_key_id: None,
        };
        let key = format!("update:{}:{update_id}", self.bot_id);
        let payment = match self
            .payments
            .create(request, origin, Some((key, request_hash)))
            .await
        {
            Ok(CreateOutcome::Created(p)) => *p,
            Ok(CreateOutcome::InProgress { payment_id }) => {
                tracing::info!(update_id, %payment_id, "update handed over again; resuming its payment");
                match self.storage.get_payment(&payment_id).await? {
                    Some(p) => p,
                    None => return Ok(()),
                }
            }
            Ok(CreateOutcome::Replay(_) | CreateOutcome::KeyReused) => {
                tracing::warn!(
                    update_id,
                    "unexpected idempotency answer for a Telegram update"
                );
                return Ok(());
            }
            Err(PaymentError::Storage(e)) => return Err(e.into()),
            Err(error) => {
                tracing::error!(%error, "could not create a payment from Telegram");
                return self
                    .reply(
                        chat,
                        "Sorry, something went wrong. Please try again.".into(),
                        None,
                    )
                    .await;
            }
        };
        self.carry_on(payment, chat).await
    }

    /// Takes a payment from "stored" to "status message sent, push sent, message updated",
    /// doing only what was not done before: the push always comes after the status message is
    /// recorded, so a payment without one was never pushed, and one with it is never pushed
    /// again.
    async fn carry_on(&self, payment: Payment, chat: i64) -> Result<(), BotError> {
        let recorded = self
            .storage
            .find_telegram_status_message(&payment.id)
            .await?;
        if recorded.is_none() && payment.status == PaymentStatus::Initiated {
            match status::send_first(&self.api, self.storage.as_ref(), &payment, chat).await {
                Ok(_) => {}
                Err(RefreshError::Storage(e)) => return Err(e.into()),
                Err(RefreshError::Telegram(error)) => {
                    // Not pushed: the payment stays `initiated` and expires unseen.
                    tracing::warn!(payment_id = %payment.id, %error, "could not send the status message; not pushing");
                    return self.telegram_failed(chat, error).await;
                }
            }
            match self.payments.send_push(payment.clone()).await {
                Ok(PushOutcome::Accepted(_)) => {}
                Ok(PushOutcome::Refused { error, .. }) => {
                    tracing::warn!(payment_id = %payment.id, %error, "push refused");
                }
                Ok(PushOutcome::Unknown { .. }) => {}
                Err(PaymentError::Storage(e)) => return Err(e.into()),
                Err(error) => {
                    tracing::error!(payment_id = %payment.id, %error, "push failed");
                }
            }
        }
        self.refresh_status(&payment.id, chat).await
    }

    async fn refresh_status(&self, payment_id: &str, chat: i64) -> Result<(), BotError> {
        match status::refresh(&self.api, self.storage.as_ref(), payment_id).await {
            Ok(_) => Ok(()),
            Err(RefreshError::Storage(e)) => Err(e.into()),
            Err(RefreshError::Telegram(error)) => self.telegram_failed(chat, error).await,
        }
    }

    // ---- the "check status" button ----------------------------------------------------------

    async fn on_button(&self, q: CallbackQuery) -> Result<(), BotError> {
        self.count("button");
        let chat = q.message.as_ref().map(|m| m.chat.id);
        let notice = match self
            .limiter
            .check(chat.unwrap_or(q.from.id), Instant::now())
        {
            Verdict::Allow => self.button_notice(&q, chat).await?,
            Verdict::Warn { .. } | Verdict::Ignore => "Too many requests: wait a few seconds.",
        };
        let answer = AnswerCallbackQuery {
            callback_query_id: q.id.clone(),
            text: Some(notice.to_owned()),
        };
        match self.api.answer_callback_query(&answer).await {
            Ok(()) => Ok(()),
            Err(error) if is_transient(&error) => Err(error.into()),
            Err(error) => {
                tracing::debug!(%error, "callback query answer refused (too old?)");
                Ok(())
            }
        }
    }

    async fn button_notice(
        &self,
        q: &CallbackQuery,
        chat: Option<i64>,
    ) -> Result<&'static str, BotError> {
        let Some(payment_id) = q
            .data
            .as_deref()
            .and_then(|d| d.strip_prefix(STATUS_BUTTON))
        else {
            return Ok("This button no longer does anything.");
        };
        let Some(payment) = self.storage.get_payment(payment_id).await? else {
            return Ok("No such payment.");
        };
        let Some(chat) = chat.filter(|c| payment.telegram_chat_id == Some(*c)) else {
            return Ok("This payment belongs to another chat.");
        };
        if !payment.status.is_final() && payment.checkout_request_id.is_some() {
            // The customer is looking at it: ask Daraja now rather than at the next check.
            if let Err(error) = self.payments.refresh(&payment.id).await {
                tracing::debug!(payment_id = %payment.id, %error, "STK Query on a button press failed");
            }
        }
        self.refresh_status(&payment.id, chat).await?;
        let now = self
            .storage
            .get_payment(&payment.id)
            .await?
            .unwrap_or(payment);
        Ok(status::short_status(&now))
    }

    // ---- the admin chat ---------------------------------------------------------------------

    async fn stats(&self, chat: i64) -> Result<(), BotError> {
        let now = now_ms();
        let stats = self
            .storage
            .payment_stats(start_of_day_eat(now), now + 1)
            .await?;
        let get = |s: PaymentStatus| stats.by_status.get(s.as_str()).cloned().unwrap_or_default();
        let completed = get(PaymentStatus::Completed);
        let unsuccessful: i64 = [
            PaymentStatus::Failed,
            PaymentStatus::Cancelled,
            PaymentStatus::TimedOut,
            PaymentStatus::Rejected,
        ]
        .into_iter()
        .map(|s| get(s).count)
        .sum();
        let open = get(PaymentStatus::Initiated).count + get(PaymentStatus::Pending).count;
        let total: i64 = stats.by_status.values().map(|t| t.count).sum();
        let finished = completed.count + unsuccessful;
        let rate = if finished == 0 {
            "no finished payments yet".to_owned()
        } else {
            format!(
                "{}% of {finished} finished",
                (completed.count * 100 + finished / 2) / finished
            )
        };
        let lines = [
            "📊 <b>Today</b> (since 00:00 EAT)".to_owned(),
            format!("Payments: {total}"),
            format!(
                "✅ Completed: {} · <b>{}</b>",
                completed.count,
                ksh(completed.amount)
            ),
            format!(
                "❌ Failed: {} · 🚫 Cancelled: {} · ⌛ Timed out: {} · ⚠️ Rejected: {}",
                get(PaymentStatus::Failed).count,
                get(PaymentStatus::Cancelled).count,
                get(PaymentStatus::TimedOut).count,
                get(PaymentStatus::Rejected).count
            ),
            format!("⏳ In progress: {open}"),
            format!("Success rate: {rate}"),
            format!("🔎 Held for review: {}", stats.needs_review),
        ];
        self.reply(chat, lines.join("\n"), None).await
    }

    async fn pending(&self, chat: i64) -> Result<(), BotError> {
        let page = PageRequest {
            limit: PENDING_LEN as u32 + 1,
            cursor: None,
        };
        let mut found: Vec<Payment> = Vec::new();
        for filter in [
            PaymentFilter {
                status: Some(PaymentStatus::Pending),
                ..Default::default()
            },
            PaymentFilter {
                status: Some(PaymentStatus::Initiated),
                ..Default::default()
            },
            PaymentFilter {
                needs_review: Some(true),
                ..Default::default()
            },
        ] {
            for p in self.storage.list_payments(&filter, &page).await?.items {
                if !found.iter().any(|f| f.id == p.id) {
                    found.push(p);
                }
            }
        }
        found.sort_by_key(|p| std::cmp::Reverse(p.created_at));
        let text = if found.is_empty() {
            "✅ Nothing is waiting or held for review.".to_owned()
        } else {
            let more = found.len().saturating_sub(PENDING_LEN);
            let mut lines = vec!["⏳ <b>Waiting or held for review</b>".to_owned()];
            for p in found.iter().take(PENDING_LEN) {
                lines.push(format!(
                    "• <b>{}</b> · {} · {} · {} since {}\n  <code>{}</code>",
                    ksh(p.amount.shillings()),
                    escape_html(&clip(&p.reference, 40)),
                    escape_html(&clip(&p.payer(), 40)),
                    p.status.as_str(),
                    eat_display(p.created_at),
                    escape_html(&p.id),
                ));
                if p.needs_review {
                    lines.push(format!(
                        "  🔎 {}",
                        escape_html(&clip(p.review_reason.as_deref().unwrap_or("held"), 200))
                    ));
                }
            }
            if more > 0 {
                lines.push(format!("…and more: see the dashboard ({more}+)."));
            }
            lines.join("\n")
        };
        self.reply(chat, text, None).await
    }
}

/// Whether a payment was started by this update (read from the metadata the bot writes).
fn started_by_update(p: &Payment, update_id: i64) -> Option<bool> {
    let metadata: Value = serde_json::from_str(p.metadata.as_deref()?).ok()?;
    Some(metadata["telegram"]["update_id"].as_i64()? == update_id)
}

/// An amount as a person types it: `100`, `1,000` or `100.00`, in whole shillings.
fn parse_amount(text: &str, bounds: AmountBounds) -> Result<Amount, String> {
    let cleaned: String = text.chars().filter(|c| *c != ',' && *c != '_').collect();
    Amount::parse(&cleaned, bounds).map_err(|e| match e {
        AmountError::NotANumber => format!(
            "“{}” is not an amount. Send a whole number of shillings, e.g. <code>/pay 100</code>.",
            escape_html(&clip(text, 20))
        ),
        AmountError::NotWhole => {
            "M-Pesa takes whole shillings only: send e.g. <code>/pay 100</code>, not 100.50."
                .to_owned()
        }
        AmountError::TooSmall { min } => format!("The smallest amount is <b>{}</b>.", ksh(min)),
        AmountError::TooLarge { max } => format!("The largest amount is <b>{}</b>.", ksh(max)),
    })
}

/// A name as text safe to keep in a description: control characters become spaces.
fn printable(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = cleaned.trim();
    if trimmed.is_empty() {
        "customer".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// `+254 708 374 149`.
fn display_phone(phone: &str) -> String {
    if phone.len() == 12 && phone.is_ascii() {
        format!(
            "+{} {} {} {}",
            &phone[..3],
            &phone[3..6],
            &phone[6..9],
            &phone[9..]
        )
    } else {
        escape_html(phone)
    }
}

fn status_icon(status: PaymentStatus) -> &'static str {
    match status {
        PaymentStatus::Initiated => "⏳",
        PaymentStatus::Pending => "📲",
        PaymentStatus::Completed => "✅",
        PaymentStatus::Failed => "❌",
        PaymentStatus::Cancelled => "🚫",
        PaymentStatus::TimedOut => "⌛",
        PaymentStatus::Rejected => "⚠️",
    }
}

/// One line about a payment for its payer.
fn payment_line(p: &Payment) -> String {
    let mut line = format!(
        "{} <b>{}</b> · {} · {} · {}",
        status_icon(p.status),
        ksh(p.amount.shillings()),
        escape_html(&clip(&p.reference, 40)),
        p.status.as_str().replace('_', " "),
        eat_display(p.created_at)
    );
    if let Some(receipt) = &p.mpesa_receipt_number {
        line.push_str(&format!(
            " · <code>{}</code>",
            escape_html(&clip(receipt, 40))
        ));
    }
    line
}

fn not_linked_text() -> String {
    "No phone number is linked to this chat yet. Send /start and tap \
     <b>📱 Share my phone number</b>."
        .into()
}

fn share_contact_keyboard() -> Value {
    json!({
        "keyboard": [[{ "text": "📱 Share my phone number", "request_contact": true }]],
        "resize_keyboard": true,
        "one_time_keyboard": true,
    })
}

fn help_text(admin: bool) -> String {
    let mut text = "<b>What I can do</b>\n\
        /pay AMOUNT [REFERENCE] – pay with M-Pesa, e.g. <code>/pay 100 INV42</code>\n\
        /status – your linked number and latest payment\n\
        /history – your last payments\n\
        /start – link your phone number\n\
        /unlink – unlink your phone number\n\
        /help – this list"
        .to_owned();
    if admin {
        text.push_str(
            "\n\n<b>Admin</b>\n\
             /stats – today's totals and success rate\n\
             /pending – payments waiting or held for review",
        );
    }
    text
}

/// Midnight in East Africa Time (UTC+3, no daylight saving) on the day of `now`.
fn start_of_day_eat(now: i64) -> i64 {
    const DAY: i64 = 86_400_000;
    const EAT: i64 = 3 * 3_600_000;
    (now + EAT).div_euclid(DAY) * DAY - EAT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_as_people_type_them() {
        let b = AmountBounds { min: 10, max: 1000 };
        assert_eq!(parse_amount("100", b).unwrap().shillings(), 100);
        assert_eq!(parse_amount("1,000", b).unwrap().shillings(), 1000);
        assert_eq!(parse_amount("100.00", b).unwrap().shillings(), 100);
        assert!(
            parse_amount("100.50", b)
                .unwrap_err()
                .contains("whole shillings")
        );
        assert!(parse_amount("5", b).unwrap_err().contains("KSh 10"));
        assert!(parse_amount("1001", b).unwrap_err().contains("KSh 1,000"));
        let e = parse_amount("<b>", b).unwrap_err();
        assert!(e.contains("“&lt;b&gt;”"), "{e}");
    }

    #[test]
    fn eat_midnight() {
        // 2026-01-01 00:00 UTC is 03:00 EAT: the day began at 2025-12-31 21:00 UTC.
        assert_eq!(start_of_day_eat(1_767_225_600_000), 1_767_214_800_000);
        // 20:59 UTC is still the same EAT day; 21:00 UTC is the next.
        assert_eq!(start_of_day_eat(1_767_214_800_000), 1_767_214_800_000);
        assert_eq!(start_of_day_eat(1_767_214_799_999), 1_767_128_400_000);
    }

    #[test]
    fn phones_and_names() {
        assert_eq!(display_phone("254708374149"), "+254 708 374 149");
        assert_eq!(printable("A\u{0}b\n"), "A b");
        assert_eq!(printable("\n"), "customer");
    }
}

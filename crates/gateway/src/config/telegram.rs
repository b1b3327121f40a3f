//! Telegram: the bot's token, the admin chat, long polling or webhook mode.

use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use super::reader::{Reader, parse};
use super::{ConfigError, Source};

#[derive(Debug, Clone)]
pub struct TelegramSettings {
    pub bot_token: SecretString,
    pub admin_chat_id: Option<i64>,
    pub api_base: Url,
    /// `TELEGRAM_WEBHOOK_SECRET`: when set, updates come by webhook instead of long polling.
    pub webhook_secret: Option<SecretString>,
    /// `TELEGRAM_WEBHOOK_URL`: where Telegram posts updates in webhook mode; by default
    /// `<MPESA_CALLBACK_URL>/telegram/webhook`.
    pub webhook_url: Option<Url>,
    /// `TELEGRAM_POLL_TIMEOUT`: how long one long poll (`getUpdates`) may wait (1s to 50s).
    pub poll_timeout: Duration,
    /// `TELEGRAM_POLL_LEASE`: how long the poller's lease lasts unrenewed; after a crash, how
    /// long until another instance sharing the database polls instead.
    pub poll_lease: Duration,
}

/// `None` (Telegram off) without `TELEGRAM_BOT_TOKEN`.
pub(super) fn read<S: Source>(r: &Reader<S>) -> Result<Option<TelegramSettings>, ConfigError> {
    let Some(token) = r.string("TELEGRAM_BOT_TOKEN") else {
        return Ok(None);
    };
    Ok(Some(TelegramSettings {
        bot_token: SecretString::from(token),
        admin_chat_id: r.read("ADMIN_CHAT_ID", parse::from_str("a Telegram chat id"))?,
        api_base: r.read_or_default("TELEGRAM_API_BASE", parse::url)?,
        webhook_secret: r.read("TELEGRAM_WEBHOOK_SECRET", webhook_secret)?,
        webhook_url: r.read("TELEGRAM_WEBHOOK_URL", parse::url)?,
        poll_timeout: r.read_or_default(
            "TELEGRAM_POLL_TIMEOUT",
            parse::duration_within(Duration::from_secs(1)..=Duration::from_secs(50)),
        )?,
        poll_lease: r.read_or_default(
            "TELEGRAM_POLL_LEASE",
            parse::duration_within(Duration::from_secs(1)..=Duration::from_secs(3600)),
        )?,
    }))
}

/// Telegram's `secret_token`: 1 to 256 of `A-Z a-z 0-9 _ -`. The refusal does not repeat it.
fn webhook_secret(v: &str) -> Result<SecretString, String> {
    if v.len() > 256
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(
            "Telegram accepts 1 to 256 letters, digits, _ and - (the value is not shown)".into(),
        );
    }
    Ok(SecretString::from(v))
}

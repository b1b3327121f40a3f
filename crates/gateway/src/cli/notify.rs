//! `mpesa-gateway notify test --channel email|telegram|webhook`: sends one real message with
//! the current configuration, through the same sender the outbox uses, and says what happened.

use anyhow::{Context, bail};
use clap::ValueEnum;
use mpesa_storage::{Channel, OutboxEvent, OutboxStatus};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::config::Config;
use crate::ids::{new_id, now_ms};
use crate::outbox::{Delivery, Sender, email, telegram, webhook_sender};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TestChannel {
    Email,
    Telegram,
    Webhook,
}

#[derive(Debug, clap::Subcommand)]
pub enum NotifyCommand {
    /// Send one test message now and report the outcome (exit 1 if it was not delivered).
    Test {
        #[arg(long, value_enum)]
        channel: TestChannel,
        /// The address or chat id to send to (default: ADMIN_EMAIL or EMAIL_FROM; ADMIN_CHAT_ID).
        #[arg(long)]
        to: Option<String>,
    },
}

/// Returns whether the message was delivered.
pub async fn run(config: &Config, command: NotifyCommand) -> anyhow::Result<bool> {
    let NotifyCommand::Test { channel, to } = command;
    let id = new_id("evt");
    let now = now_ms();
    let text = format!("Test message {id} from mpesa-gateway.");
    let (channel, outcome) = match channel {
        TestChannel::Email => {
            let settings = config
                .email
                .as_ref()
                .context("email is off: set SMTP_URL and EMAIL_FROM")?;
            let to = to
                .or_else(|| settings.admin_email.clone())
                .unwrap_or_else(|| settings.from.clone());
            let sender = email::EmailSender::new(settings, config.outbox.smtp_timeout)?;
            println!(
                "Sending a test email to {to} via {}:{} ({})…",
                sender.target().host,
                sender.target().port,
                sender.target().security.describe()
            );
            let payload = json!({ "kind": "test", "message": text }).to_string();
            let event = test_event(&id, Channel::Email, &to, &payload, now);
            let outcome = sender.send(&event).await;
            (Channel::Email, outcome)
        }
        TestChannel::Telegram => {
            let settings = config
                .telegram
                .as_ref()
                .context("Telegram is off: set TELEGRAM_BOT_TOKEN")?;
            let Some(to) = to.or_else(|| settings.admin_chat_id.map(|c| c.to_string())) else {
                bail!("no chat to send to: set ADMIN_CHAT_ID or pass --to CHAT_ID");
            };
            let api = crate::telegram::BotApi::new(&settings.api_base, settings.bot_token.clone())?;
            // The sender records a chat that blocked the bot: it needs the database.
            let storage = mpesa_storage::connect(
                config.database_url.expose_secret(),
                &mpesa_storage::ConnectOptions {
                    max_connections: 2,
                    ..Default::default()
                },
            )
            .await
            .context("database (to record a chat that blocked the bot)")?;
            let sender =
                telegram::TelegramSender::new(api, storage.clone(), crate::clock::Clock::system());
            println!("Sending a test Telegram message to chat {to}…");
            let payload = json!({ "kind": "test", "message": text }).to_string();
            let event = test_event(&id, Channel::Telegram, &to, &payload, now);
            let outcome = sender.send(&event).await;
            storage.close().await;
            (Channel::Telegram, outcome)
        }
        TestChannel::Webhook => {
            let settings = config
                .webhook
                .as_ref()
                .context("webhooks are off: set WEBHOOK_URL and WEBHOOK_SECRET")?;
            if to.is_some() {
                bail!("--to does not apply to webhooks: they go to WEBHOOK_URL");
            }
            let sender = webhook_sender::WebhookSender::new(
                settings.url.clone(),
                settings.secret.clone(),
                config.webhook_allow_private,
                config.outbox.webhook_timeout,
            )?;
            let destination = crate::config::mask_url(settings.url.as_str());
            println!("Sending a signed test event {id} to {destination}…");
            let payload = json!({
                "id": id, "type": "test", "created": now / 1000,
                "data": { "message": text }
            })
            .to_string();
            let event = test_event(&id, Channel::Webhook, settings.url.as_str(), &payload, now);
            let outcome = sender.send(&event).await;
            (Channel::Webhook, outcome)
        }
    };
    let elapsed = now_ms() - now;
    Ok(match outcome {
        Delivery::Delivered { code } => {
            println!(
                "delivered ({} {}) in {elapsed} ms",
                channel.as_str(),
                code.map(|c| format!("answered {c}")).unwrap_or_default()
            );
            true
        }
        Delivery::Failed { error, .. } => {
            println!("NOT delivered (the outbox would retry): {error}");
            false
        }
        Delivery::Permanent { error, .. } => {
            println!("NOT delivered (the outbox would dead-letter it): {error}");
            false
        }
        Delivery::Blocked { error, .. } => {
            println!("NOT delivered (the chat blocked the bot): {error}");
            false
        }
    })
}

fn test_event(
    id: &str,
    channel: Channel,
    destination: &str,
    payload: &str,
    now: i64,
) -> OutboxEvent {
    OutboxEvent {
        id: id.to_owned(),
        payment_id: None,
        channel,
        event_type: "test".into(),
        destination: destination.to_owned(),
        payload: payload.to_owned(),
        dedupe_key: id.to_owned(),
        status: OutboxStatus::Pending,
        attempts: 0,
        next_attempt_at: now,
        lease_owner: None,
        lease_until: None,
        last_error: None,
        created_at: now,
        delivered_at: None,
    }
}

//! Telegram alerts to the admin chat and receipts to customers, in HTML parse mode with every
//! outside value escaped; for payments started from the bot, the edit of its status message.
//! A 429's `retry_after` sets the next attempt; a 403 (the chat blocked the bot) is recorded
//! on the chat and ends the event as `blocked`.

use std::sync::Arc;

use mpesa_storage::{OutboxEvent, Storage};

use super::Delivery;
use super::message::{Notification, PaymentFacts, clip, headline, ksh};
use crate::clock::Clock;
use crate::payments::StatusMessages;
use crate::payments::notify::STATUS_MESSAGE;
use crate::telegram::{BotApi, BotApiError, ChatId, SendMessage, escape_html, status};

pub struct TelegramSender {
    api: BotApi,
    storage: Arc<dyn Storage>,
    status_messages: StatusMessages,
    /// When a chat is recorded as having blocked the bot.
    clock: Clock,
}

impl TelegramSender {
    pub fn new(api: BotApi, storage: Arc<dyn Storage>, clock: Clock) -> Self {
        TelegramSender {
            api,
            status_messages: StatusMessages::new(storage.clone()),
            storage,
            clock,
        }
    }
}

impl super::Sender for TelegramSender {
    async fn send(&self, event: &OutboxEvent) -> Delivery {
        let notification = match Notification::parse(&event.payload) {
            Ok(n) => n,
            Err(error) => return Delivery::Permanent { error, code: None },
        };
        if notification.kind == STATUS_MESSAGE {
            return self.edit_status_message(event, &notification).await;
        }
        let text = match render(&event.event_type, &notification) {
            Ok(text) => text,
            Err(error) => return Delivery::Permanent { error, code: None },
        };
        let chat: ChatId = event.destination.parse().expect("infallible");
        if let Some(blocked) = self.blocked(&chat).await {
            return blocked;
        }
        match self
            .api
            .send_message(&SendMessage::html(chat.clone(), text))
            .await
        {
            Ok(_) => Delivery::Delivered { code: Some(200) },
            Err(error) => delivery_for(error, &chat, self.storage.as_ref(), &self.clock).await,
        }
    }
}

impl TelegramSender {
    /// `Blocked` for a chat recorded as having blocked the bot.
    async fn blocked(&self, chat: &ChatId) -> Option<Delivery> {
        if let ChatId::Id(id) = chat
            && let Ok(Some(link)) = self.storage.find_telegram_link(*id).await
            && link.blocked_at.is_some()
        {
            return Some(Delivery::Blocked {
                error: "this chat blocked the bot earlier".into(),
                code: None,
            });
        }
        None
    }

    /// A payment started from the bot reached its final state: its status message is edited
    /// to show it, rendered from the payment as stored now (see `telegram::status`).
    async fn edit_status_message(&self, event: &OutboxEvent, n: &Notification) -> Delivery {
        let payment_id = match (&event.payment_id, &n.payment) {
            (Some(id), _) => id.clone(),
            (None, Some(p)) => p.id.clone(),
            (None, None) => {
                return Delivery::Permanent {
                    error: "a status message row without its payment".into(),
                    code: None,
                };
            }
        };
        let chat: ChatId = event.destination.parse().expect("infallible");
        if let Some(blocked) = self.blocked(&chat).await {
            return blocked;
        }
        match status::refresh(&self.api, &self.status_messages, &payment_id).await {
            Ok(_) => Delivery::Delivered { code: Some(200) },
            Err(status::RefreshError::Telegram(error)) => {
                delivery_for(error, &chat, self.storage.as_ref(), &self.clock).await
            }
            Err(status::RefreshError::Storage(error)) => Delivery::Failed {
                error: format!("database: {error}"),
                code: None,
                after: None,
            },
        }
    }
}

async fn delivery_for(
    error: BotApiError,
    chat: &ChatId,
    storage: &dyn Storage,
    clock: &Clock,
) -> Delivery {
    let code = error.code().map(i32::from);
    match error {
        BotApiError::TooManyRequests { retry_after, .. } => Delivery::Failed {
            error: error.to_string(),
            code,
            after: Some(retry_after),
        },
        BotApiError::Forbidden { .. } => {
            if let ChatId::Id(id) = chat
                && let Err(e) = storage
                    .mark_telegram_chat_blocked(*id, clock.now_ms())
                    .await
            {
                tracing::warn!(error = %e, "could not record a blocked Telegram chat");
            }
            Delivery::Blocked {
                error: error.to_string(),
                code,
            }
        }
        // Chat not found, or a message Telegram cannot parse: sending it again changes nothing.
        BotApiError::BadRequest { .. } => Delivery::Permanent {
            error: error.to_string(),
            code,
        },
        // A wrong token, Telegram down, no network: fixable, so retried on the schedule.
        BotApiError::Unauthorized { .. }
        | BotApiError::Api { .. }
        | BotApiError::Transport(_)
        | BotApiError::Decode(_) => Delivery::Failed {
            error: error.to_string(),
            code,
            after: None,
        },
    }
}

/// The message text (Telegram HTML) for a row.
pub fn render(event_type: &str, n: &Notification) -> Result<String, String> {
    match n.kind.as_str() {
        "customer_receipt" => Ok(customer_receipt(n.payment()?)),
        "admin_alert" => Ok(admin_alert(event_type, n.payment()?, None)),
        "review_alert" => Ok(admin_alert(
            event_type,
            n.payment()?,
            n.reason
                .as_deref()
                .or(n.payment()?.review_reason.as_deref()),
        )),
        // A ready text (refunds, payouts).
        "notice" => Ok(escape_html(&clip(n.message.as_deref().unwrap_or(""), 2000))),
        // A ready message in Telegram's HTML, escaped when it was written (receipt checks).
        "notice_html" => Ok(n.message.clone().unwrap_or_default()),
        "test" => Ok(format!(
            "🔔 <b>mpesa-gateway test message</b>\n{}",
            escape_html(n.message.as_deref().unwrap_or("Telegram delivery works."))
        )),
        other => Err(format!("unknown Telegram notification kind {other:?}")),
    }
}

fn icon(event_type: &str) -> &'static str {
    match event_type {
        "payment.completed" | "receipt" => "✅",
        "payment.failed" => "❌",
        "payment.cancelled" => "🚫",
        "payment.timed_out" => "⌛",
        "payment.held_for_review" => "⚠️",
        _ => "ℹ️",
    }
}

/// To the business's own admin chat: what happened, with the full phone number.
fn admin_alert(event_type: &str, p: &PaymentFacts, review_reason: Option<&str>) -> String {
    let e = |s: &str| escape_html(&clip(s, 200));
    let mut lines = vec![
        format!("{} <b>{}</b>", icon(event_type), headline(event_type)),
        format!("Amount: <b>{}</b>", ksh(p.amount)),
        format!("Phone: {}", e(&p.payer())),
        format!("Reference: {}", e(&p.reference)),
    ];
    if p.channel == "c2b" {
        lines.push("Paid to the paybill/till (C2B)".to_owned());
    }
    if let Some(note) = p.recovery_note() {
        lines.push(format!("⚠️ {note}"));
    }
    if !p.description.is_empty() {
        lines.push(format!("Description: {}", e(&p.description)));
    }
    if let Some(receipt) = &p.mpesa_receipt_number {
        lines.push(format!("M-Pesa receipt: <code>{}</code>", e(receipt)));
    }
    if event_type != "payment.completed"
        && let Some(desc) = &p.result_desc
    {
        let code = p.result_code.as_deref().unwrap_or("?");
        lines.push(format!("Result: {} ({})", e(desc), e(code)));
    }
    if let Some(reason) = review_reason {
        lines.push(format!("Why held: {}", e(reason)));
        lines.push(format!("Status stays: {}", e(&p.status)));
    }
    if let Some(time) = p.mpesa_time().or_else(|| p.updated_time()) {
        lines.push(format!("Time: {time}"));
    }
    lines.push(format!("Payment: <code>{}</code>", e(&p.id)));
    lines.join("\n")
}

/// To the customer: their own payment only.
fn customer_receipt(p: &PaymentFacts) -> String {
    let e = |s: &str| escape_html(&clip(s, 200));
    let w = p.receipt_words();
    let mut lines = vec![
        format!("✅ <b>{}</b>", w.received),
        format!("{}: <b>{}</b>", w.amount, ksh(p.amount)),
        format!("{}: {}", w.reference, e(&p.reference)),
    ];
    if !p.description.is_empty() {
        lines.push(format!("{}: {}", w.paid_for, e(&p.description)));
    }
    if let Some(receipt) = &p.mpesa_receipt_number {
        lines.push(format!("{}: <code>{}</code>", w.receipt_number, e(receipt)));
    }
    if let Some(time) = p.mpesa_time() {
        lines.push(format!("{}: {time}", w.date));
    }
    lines.push(w.thank_you.into());
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payment() -> PaymentFacts {
        PaymentFacts {
            id: "pay_1".into(),
            status: "completed".into(),
            phone: Some("254708374149".into()),
            amount: 1500,
            reference: "INV42".into(),
            description: "<b>free</b> & <a href=\"https://evil\">click</a>\nAmount: KSh 1".into(),
            mpesa_receipt_number: Some("SGA1XYZ123".into()),
            transaction_date: Some("2024-07-10T06:15:41.000Z".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_swahili_customer_gets_a_swahili_receipt() {
        let p = PaymentFacts {
            customer_language: Some("sw".into()),
            ..payment()
        };
        let text = customer_receipt(&p);
        assert!(text.starts_with("✅ <b>Malipo yamepokelewa</b>"), "{text}");
        assert!(
            text.contains("Kiasi: <b>KSh 1,500</b>") && text.contains("Asante."),
            "{text}"
        );
    }

    #[test]
    fn a_plain_notice_is_escaped_and_an_html_one_sent_as_written() {
        let notice = |kind: &str| Notification {
            kind: kind.into(),
            payment: None,
            reason: None,
            message: Some("receipt <code>SGA1XYZ123</code>".into()),
        };
        assert_eq!(
            render("refund.completed", &notice("notice")).unwrap(),
            "receipt &lt;code&gt;SGA1XYZ123&lt;/code&gt;"
        );
        assert_eq!(
            render("receipt_check", &notice("notice_html")).unwrap(),
            "receipt <code>SGA1XYZ123</code>"
        );
    }

    #[test]
    fn customer_text_is_escaped_and_complete() {
        let n = Notification {
            kind: "customer_receipt".into(),
            payment: Some(payment()),
            reason: None,
            message: None,
        };
        let text = render("receipt", &n).unwrap();
        assert!(text.contains("KSh 1,500"));
        assert!(text.contains("SGA1XYZ123"));
        assert!(text.contains("10 Jul 2024 09:15:41 EAT"));
        assert!(
            text.contains("&lt;b&gt;free&lt;/b&gt; &amp; &lt;a href=&quot;https://evil&quot;&gt;")
        );
        assert!(!text.contains("<a "), "{text}");
        assert!(
            !text.contains("254708374149"),
            "a receipt carries no phone number"
        );
    }

    #[test]
    fn admin_alert_says_what_happened() {
        let mut p = payment();
        p.status = "failed".into();
        p.mpesa_receipt_number = None;
        p.result_code = Some("1".into());
        p.result_desc = Some("The balance is insufficient <for> the transaction.".into());
        let n = Notification {
            kind: "admin_alert".into(),
            payment: Some(p),
            reason: None,
            message: None,
        };
        let text = render("payment.failed", &n).unwrap();
        assert!(text.starts_with("❌ <b>Payment failed</b>"), "{text}");
        assert!(text.contains("254708374149"));
        assert!(text.contains("insufficient &lt;for&gt; the"));
    }
}

//! The one message a chat sees for a payment it started: sent by the bot before the push,
//! edited as the payment moves (prompt on the phone, then completed with the receipt number or
//! why not). The bot edits it after the push; the outbox edits it to the final state.
//!
//! Two editors can race (the bot's "check your phone" edit and the outbox's "completed" edit),
//! and Telegram has no conditional edit. So every editor renders the payment as stored *now*,
//! edits, reads the payment again and edits once more if it changed meanwhile: whichever edit
//! lands last, its editor then sees the newest state and puts it up.

use mpesa_domain::PaymentStatus;
use mpesa_storage::{Payment, StorageError, TelegramStatusMessage};
use serde_json::{Value, json};

use super::api::{BotApi, BotApiError, EditMessageText, SendMessage};
use super::escape_html;
use crate::ids::{eat_display, now_ms};
use crate::outbox::message::{clip, ksh};
use crate::payments::StatusMessages;

/// The `callback_data` prefix of the "check status" button.
pub const STATUS_BUTTON: &str = "status:";

/// A rendered status message: its HTML text and inline keyboard.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub html: String,
    pub keyboard: Option<Value>,
}

/// The status message for a payment as it is.
pub fn render(p: &Payment) -> Rendered {
    let e = |s: &str| escape_html(&clip(s, 200));
    let (headline, hint) = match p.status {
        PaymentStatus::Initiated => (
            "⏳ <b>Sending the payment request…</b>",
            Some("The M-Pesa prompt should reach your phone in a few seconds."),
        ),
        PaymentStatus::Pending => (
            "📲 <b>Check your phone</b>",
            Some("Enter your M-Pesa PIN on the prompt to pay."),
        ),
        PaymentStatus::Completed => ("✅ <b>Payment completed</b>", None),
        PaymentStatus::Failed => (
            "❌ <b>Payment failed</b>",
            Some("Nothing was taken. Send /pay to try again."),
        ),
        PaymentStatus::Cancelled => (
            "🚫 <b>Payment cancelled</b>",
            Some("The request was cancelled on the phone. Send /pay to try again."),
        ),
        PaymentStatus::TimedOut => (
            "⌛ <b>Payment timed out</b>",
            Some("No PIN was entered in time. Send /pay to try again."),
        ),
        PaymentStatus::Rejected => (
            "⚠️ <b>Payment not started</b>",
            Some("M-Pesa refused the request. Send /pay to try again later."),
        ),
    };
    let mut lines = vec![
        headline.to_owned(),
        format!("Amount: <b>{}</b>", ksh(p.amount.shillings())),
        format!("Reference: {}", e(&p.reference)),
    ];
    if p.status == PaymentStatus::Completed {
        if let Some(receipt) = &p.mpesa_receipt_number {
            lines.push(format!("M-Pesa receipt: <code>{}</code>", e(receipt)));
        }
        if let Some(at) = p.transaction_date.or(p.finalized_at) {
            lines.push(format!("Date: {}", eat_display(at)));
        }
    } else if p.status.is_final()
        && let Some(why) = &p.result_desc
    {
        lines.push(format!("Why: {}", e(why)));
    }
    if p.needs_review {
        lines.push("🔎 The shop is checking this payment and will confirm it.".into());
    }
    if let Some(hint) = hint {
        lines.push(String::new());
        lines.push(hint.to_owned());
    }
    let keyboard = (!p.status.is_final()).then(|| {
        json!({ "inline_keyboard": [[{
            "text": "🔄 Check status",
            "callback_data": format!("{STATUS_BUTTON}{}", p.id),
        }]] })
    });
    Rendered {
        html: lines.join("\n"),
        keyboard,
    }
}

/// A few words for the notice shown where the button was pressed.
pub fn short_status(p: &Payment) -> &'static str {
    match p.status {
        PaymentStatus::Initiated => "Sending the request…",
        PaymentStatus::Pending => "Waiting for your PIN",
        PaymentStatus::Completed => "Completed ✅",
        PaymentStatus::Failed => "Failed",
        PaymentStatus::Cancelled => "Cancelled",
        PaymentStatus::TimedOut => "Timed out",
        PaymentStatus::Rejected => "Not started",
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Telegram(#[from] BotApiError),
}

/// How many times one refresh edits at most (a payment moves through few states).
const MAX_EDITS: usize = 3;

/// Sends the first status message of a payment and records it. Call before the push.
pub async fn send_first(
    api: &BotApi,
    messages: &StatusMessages,
    payment: &Payment,
    chat_id: i64,
) -> Result<TelegramStatusMessage, RefreshError> {
    let rendered = render(payment);
    let mut message = SendMessage::html(chat_id.into(), rendered.html);
    message.reply_markup = rendered.keyboard;
    let sent = api.send_message(&message).await?;
    let record = TelegramStatusMessage {
        payment_id: payment.id.clone(),
        chat_id,
        message_id: sent.message_id,
        updated_at: now_ms(),
    };
    messages.record(&record).await?;
    Ok(record)
}

/// Brings a payment's status message up to date (see the module comment). Sends a new one when
/// the payment has none, or when its message was deleted. Nothing for a payment without a chat.
pub async fn refresh(
    api: &BotApi,
    messages: &StatusMessages,
    payment_id: &str,
) -> Result<Option<Payment>, RefreshError> {
    let Some(mut payment) = messages.payment(payment_id).await? else {
        return Ok(None);
    };
    for _ in 0..MAX_EDITS {
        let Some(chat_id) = payment.telegram_chat_id else {
            return Ok(Some(payment));
        };
        let shown = render(&payment);
        match messages.of_payment(payment_id).await? {
            Some(record) => {
                let mut edit =
                    EditMessageText::html(chat_id.into(), record.message_id, shown.html.clone());
                edit.reply_markup = shown.keyboard.clone();
                match api.edit_message_text(&edit).await {
                    Ok(()) => {}
                    Err(e) if e.is_not_modified() => {}
                    Err(e) if e.is_message_gone() => {
                        send_first(api, messages, &payment, chat_id).await?;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            None => {
                send_first(api, messages, &payment, chat_id).await?;
            }
        }
        let Some(now) = messages.payment(payment_id).await? else {
            return Ok(None);
        };
        let unchanged = render(&now) == shown;
        payment = now;
        if unchanged {
            break;
        }
    }
    Ok(Some(payment))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mpesa_domain::{Amount, Msisdn};
    use mpesa_storage::{PaymentChannel, PaymentSource};

    fn payment(status: PaymentStatus) -> Payment {
        Payment {
            id: "pay_1".into(),
            status,
            phone: Some(Msisdn::parse("0708374149").unwrap()),
            amount: Amount::from_stored(1500),
            reference: "<b>x</b>&amp;".into(),
            description: "d".into(),
            customer_email: None,
            telegram_chat_id: Some(42),
            metadata: None,
            checkout_request_id: None,
            merchant_request_id: None,
            mpesa_receipt_number: Some("SGA1</code>".into()),
            result_code: None,
            result_desc: Some("Request cancelled by user <script>".into()),
            transaction_date: Some(1_720_592_141_000),
            needs_review: false,
            review_reason: None,
            api_key_id: None,
            source: PaymentSource::Telegram,
            query_attempts: 0,
            next_check_at: None,
            created_at: 0,
            updated_at: 0,
            finalized_at: None,
            version: 1,
            payment_link_id: None,
            customer_language: None,
            channel: PaymentChannel::Stk,
            business_short_code: None,
            payer_name: None,
            payer_msisdn: None,
            recovered_by: None,
        }
    }

    #[test]
    fn completed_shows_the_receipt_escaped_and_no_button() {
        let r = render(&payment(PaymentStatus::Completed));
        assert!(
            r.html.starts_with("✅ <b>Payment completed</b>"),
            "{}",
            r.html
        );
        assert!(r.html.contains("KSh 1,500"));
        assert!(r.html.contains("Reference: &lt;b&gt;x&lt;/b&gt;&amp;amp;"));
        assert!(r.html.contains("<code>SGA1&lt;/code&gt;</code>"));
        assert!(r.html.contains("10 Jul 2024 09:15:41 EAT"));
        assert_eq!(r.keyboard, None);
    }

    #[test]
    fn open_payments_have_a_button_and_failures_say_why() {
        let r = render(&payment(PaymentStatus::Pending));
        assert!(r.html.starts_with("📲 <b>Check your phone</b>"));
        assert_eq!(
            r.keyboard.unwrap()["inline_keyboard"][0][0]["callback_data"],
            "status:pay_1"
        );
        let r = render(&payment(PaymentStatus::Cancelled));
        assert!(
            r.html
                .contains("Why: Request cancelled by user &lt;script&gt;")
        );
        assert!(!r.html.contains("receipt"));
    }
}

//! How the bot writes amounts, phones and payments, and its fixed texts.

use mpesa_domain::{Amount, AmountBounds, AmountError, PaymentStatus};
use mpesa_storage::Payment;
use serde_json::{Value, json};

use crate::ids::eat_display;
use crate::outbox::message::{clip, ksh};
use crate::telegram::escape_html;

/// An amount as a person types it: `100`, `1,000` or `100.00`, in whole shillings.
pub(super) fn parse_amount(text: &str, bounds: AmountBounds) -> Result<Amount, String> {
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
pub(super) fn printable(name: &str) -> String {
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
pub(super) fn display_phone(phone: &str) -> String {
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

pub(super) fn status_icon(status: PaymentStatus) -> &'static str {
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
pub(super) fn payment_line(p: &Payment) -> String {
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

pub(super) fn not_linked_text() -> String {
    "No phone number is linked to this chat yet. Send /start and tap \
     <b>📱 Share my phone number</b>."
        .into()
}

pub(super) fn share_contact_keyboard() -> Value {
    json!({
        "keyboard": [[{ "text": "📱 Share my phone number", "request_contact": true }]],
        "resize_keyboard": true,
        "one_time_keyboard": true,
    })
}

pub(super) fn help_text(admin: bool) -> String {
    let mut text = "<b>What I can do</b>\n\
        /pay AMOUNT [REFERENCE] – pay with M-Pesa, e.g. <code>/pay 100 INV42</code>\n\
        /paid CODE – paid but got no receipt? Send the M-Pesa code, e.g. <code>/paid SGA1XYZ123</code>\n\
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
    fn phones_and_names() {
        assert_eq!(display_phone("254708374149"), "+254 708 374 149");
        assert_eq!(printable("A\u{0}b\n"), "A b");
        assert_eq!(printable("\n"), "customer");
    }
}

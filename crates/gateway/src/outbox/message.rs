//! What email and Telegram rows carry (written by `payments::notify`), read back for delivery,
//! and the wording both channels share.

use serde::Deserialize;

use crate::ids::eat_display;

/// The payload of an email or Telegram row.
#[derive(Debug, Clone, Deserialize)]
pub struct Notification {
    /// `customer_receipt`, `admin_alert`, `review_alert` or `test`.
    pub kind: String,
    #[serde(default)]
    pub payment: Option<PaymentFacts>,
    /// Why a payment was held for review.
    #[serde(default)]
    pub reason: Option<String>,
    /// The text of a test message.
    #[serde(default)]
    pub message: Option<String>,
}

/// The fields of a payment (as `PaymentView` writes it) that messages use.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PaymentFacts {
    pub id: String,
    pub status: String,
    pub phone: Option<String>,
    pub amount: i64,
    pub channel: String,
    pub payer_name: Option<String>,
    pub payer_msisdn: Option<String>,
    pub recovered_by: Option<String>,
    pub reference: String,
    pub description: String,
    pub mpesa_receipt_number: Option<String>,
    pub result_code: Option<String>,
    pub result_desc: Option<String>,
    pub transaction_date: Option<String>,
    pub completed_at: Option<String>,
    pub updated_at: String,
    pub review_reason: Option<String>,
    /// The language the customer chose on the pay page (never the merchant's metadata).
    pub customer_language: Option<String>,
}

/// The words of a customer's receipt, in the language they paid in.
pub struct ReceiptWords {
    pub subject: &'static str,
    pub received: &'static str,
    pub thanks_line: &'static str,
    pub receipt_number: &'static str,
    pub amount: &'static str,
    pub date: &'static str,
    pub reference: &'static str,
    pub paid_for: &'static str,
    pub thank_you: &'static str,
    pub not_given: &'static str,
}

pub const RECEIPT_EN: ReceiptWords = ReceiptWords {
    subject: "Payment Complete",
    received: "Payment received",
    thanks_line: "Thank you. Your M-Pesa payment has been received.",
    receipt_number: "Receipt number",
    amount: "Amount",
    date: "Date",
    reference: "Reference",
    paid_for: "For",
    thank_you: "Thank you.",
    not_given: "(not given)",
};

pub const RECEIPT_SW: ReceiptWords = ReceiptWords {
    subject: "Malipo Yamekamilika",
    received: "Malipo yamepokelewa",
    thanks_line: "Asante. Malipo yako ya M-Pesa yamepokelewa.",
    receipt_number: "Namba ya risiti",
    amount: "Kiasi",
    date: "Tarehe",
    reference: "Kumbukumbu",
    paid_for: "Kwa ajili ya",
    thank_you: "Asante.",
    not_given: "(haijatolewa)",
};

impl Notification {
    pub fn parse(payload: &str) -> Result<Self, String> {
        serde_json::from_str(payload).map_err(|e| format!("unreadable notification payload: {e}"))
    }

    /// The payment, or an error for a payload that should have one.
    pub fn payment(&self) -> Result<&PaymentFacts, String> {
        self.payment
            .as_ref()
            .ok_or_else(|| format!("a {} notification without its payment", self.kind))
    }
}

impl PaymentFacts {
    /// The customer's receipt words: Swahili for a pay page payment made in Swahili.
    pub fn receipt_words(&self) -> &'static ReceiptWords {
        match self.customer_language.as_deref() {
            Some("sw") => &RECEIPT_SW,
            _ => &RECEIPT_EN,
        }
    }

    /// Who paid, for a person: the number, or for a C2B payment without one the MSISDN as
    /// Safaricom gave it (masked or hashed) and the payer's name.
    pub fn payer(&self) -> String {
        let number = self
            .phone
            .clone()
            .or_else(|| self.payer_msisdn.clone())
            .unwrap_or_else(|| "unknown".to_owned());
        match &self.payer_name {
            Some(name) => format!("{name} ({number})"),
            None => number,
        }
    }

    /// A line saying the confirmation never came, for a payment a recovery booked.
    pub fn recovery_note(&self) -> Option<&'static str> {
        match self.recovered_by.as_deref()? {
            "pull" => Some("Recovered by Pull Transactions: its C2B confirmation never came."),
            "status" => {
                Some("Recovered by a Transaction Status check: its C2B confirmation never came.")
            }
            _ => None,
        }
    }

    /// When M-Pesa says the payment happened, in East Africa Time (else when it settled).
    pub fn mpesa_time(&self) -> Option<String> {
        self.transaction_date
            .as_deref()
            .or(self.completed_at.as_deref())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| eat_display(t.timestamp_millis()))
    }

    /// When the payment last changed, in East Africa Time.
    pub fn updated_time(&self) -> Option<String> {
        chrono::DateTime::parse_from_rfc3339(&self.updated_at)
            .ok()
            .map(|t| eat_display(t.timestamp_millis()))
    }
}

pub use mpesa_domain::ksh;

/// The headline for an event type.
pub fn headline(event_type: &str) -> &'static str {
    match event_type {
        "payment.completed" | "receipt" => "Payment completed",
        "payment.failed" => "Payment failed",
        "payment.cancelled" => "Payment cancelled",
        "payment.timed_out" => "Payment timed out",
        "payment.held_for_review" => "Payment held for review",
        "test" => "Test message",
        _ => "Payment update",
    }
}

/// Cuts an outside value to `max` characters, so no field can swamp a message.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(max).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shillings_with_thousands() {
        assert_eq!(ksh(1), "KSh 1");
        assert_eq!(ksh(999), "KSh 999");
        assert_eq!(ksh(1000), "KSh 1,000");
        assert_eq!(ksh(250_000), "KSh 250,000");
        assert_eq!(ksh(1_234_567), "KSh 1,234,567");
    }

    #[test]
    fn mpesa_time_is_east_africa_time() {
        let p = PaymentFacts {
            transaction_date: Some("2024-07-10T06:15:41.000Z".into()),
            ..Default::default()
        };
        assert_eq!(p.mpesa_time().unwrap(), "10 Jul 2024 09:15:41 EAT");
    }

    #[test]
    fn clips_long_values() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("abcdef", 3), "abc…");
    }
}

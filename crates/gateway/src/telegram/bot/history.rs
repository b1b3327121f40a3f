//! `/status` and `/history`: the linked number's payments, for its payer.

use mpesa_domain::PaymentStatus;
use mpesa_storage::{PageRequest, Payment, PaymentFilter, StorageError};

use super::text::{display_phone, not_linked_text, payment_line};
use super::{Bot, BotError};

/// How many payments `/history` lists.
const HISTORY_LEN: u32 = 5;

impl Bot {
    pub(super) async fn status(&self, chat: i64) -> Result<(), BotError> {
        let Some(link) = self.accounts.chat_link(chat).await? else {
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

    pub(super) async fn history(&self, chat: i64) -> Result<(), BotError> {
        let Some(link) = self.accounts.chat_link(chat).await? else {
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

    pub(super) async fn payments_of(
        &self,
        phone: &str,
        status: Option<PaymentStatus>,
        limit: u32,
    ) -> Result<Vec<Payment>, StorageError> {
        Ok(self
            .payments
            .reads()
            .list(
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
}

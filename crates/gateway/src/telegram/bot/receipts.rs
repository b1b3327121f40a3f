//! `/paid CODE`: a customer whose M-Pesa receipt did not come gives its code; the bot asks
//! Safaricom (Transaction Status, through the receipt-check service) and answers "asking
//! Safaricom" now. What Safaricom found comes later, through the outbox, written in the
//! transaction that makes the check final. A code books one payment only, however often it is
//! sent and by whom.

use super::{Bot, BotError};
use crate::money_out::{ReceiptError, Requester};
use crate::outbox::message::{clip, ksh};
use crate::telegram::escape_html;

impl Bot {
    pub(super) async fn paid(&self, chat: i64, args: &str) -> Result<(), BotError> {
        let args = args.trim();
        if args.is_empty() {
            return self
                .reply(
                    chat,
                    "Paid but got no receipt? Send the M-Pesa code from your confirmation SMS, \
                     e.g. <code>/paid SGA1XYZ123</code>, and I will ask Safaricom."
                        .into(),
                    None,
                )
                .await;
        }
        let code = match crate::money_out::receipts::parse_typed_code(args) {
            Ok(code) => code,
            Err(_) => {
                let text = format!(
                    "“{}” is not an M-Pesa code. It is 10 letters and digits, like \
                     <code>SGA1XYZ123</code>, at the start of your M-Pesa SMS.",
                    escape_html(&clip(args, 24))
                );
                return self.reply(chat, text, None).await;
            }
        };
        // A receipt we already hold is answered at once: nothing to ask.
        if let Some(p) = self.payments.reads().find_by_receipt(&code).await?
            && p.status == mpesa_domain::PaymentStatus::Completed
        {
            let text = format!(
                "✅ Payment <code>{code}</code> of <b>{}</b> is already recorded. Thank you!",
                ksh(p.amount.shillings())
            );
            return self.reply(chat, text, None).await;
        }
        let check = match self
            .receipts
            .check(&code, &Requester::telegram(chat), Some(chat))
            .await
        {
            Ok(check) => check,
            Err(ReceiptError::NotConfigured) => {
                return self
                    .reply(
                        chat,
                        "Sorry, this shop cannot check M-Pesa codes with Safaricom yet. \
                         Please contact the shop with your code."
                            .into(),
                        None,
                    )
                    .await;
            }
            Err(ReceiptError::Storage(e)) => return Err(e.into()),
            Err(e) => {
                tracing::warn!(chat_id = chat, error = %e, "/paid could not check the receipt");
                return self
                    .reply(
                        chat,
                        "Sorry, I could not check that code now. Please try again in a few minutes."
                            .into(),
                        None,
                    )
                    .await;
            }
        };
        if check.status.is_final() && !check.telegram_chats.contains(&chat) {
            // It was answered just before this chat could be added to it.
            let answer = self.receipts.answer(check).await.map_err(|e| match e {
                ReceiptError::Storage(s) => BotError::Storage(s),
                other => {
                    BotError::Storage(mpesa_storage::StorageError::Database(other.to_string()))
                }
            })?;
            let text =
                crate::money_out::receipts::customer_text(&answer.check, answer.payment.as_ref());
            return self.reply(chat, text, None).await;
        }
        // The answer follows through the outbox (it may even be on its way already).
        let text = format!(
            "🔎 Asking Safaricom about <code>{code}</code>… I will tell you what they say."
        );
        self.reply(chat, text, None).await
    }
}

//! Linking a chat to the customer's own phone number (a shared contact), and unlinking it.

use mpesa_domain::Msisdn;
use mpesa_storage::TelegramLink;
use serde_json::json;

use super::text::{display_phone, share_contact_keyboard};
use super::{Bot, BotError};
use crate::ids::now_ms;
use crate::telegram::updates::{Contact, Message, User};

impl Bot {
    pub(super) async fn start(&self, chat: i64) -> Result<(), BotError> {
        if let Some(link) = self.accounts.chat_link(chat).await? {
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

    pub(super) async fn on_contact(
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
            .accounts
            .link_chat(&TelegramLink {
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

    pub(super) async fn unlink(&self, chat: i64) -> Result<(), BotError> {
        let text = if self.accounts.unlink_chat(chat).await? {
            tracing::info!(chat_id = chat, "Telegram chat unlinked");
            "Your number is no longer linked to this chat. Send /start to link it again."
        } else {
            "No number is linked to this chat. Send /start to link one."
        };
        self.reply(chat, text.into(), Some(json!({ "remove_keyboard": true })))
            .await
    }
}

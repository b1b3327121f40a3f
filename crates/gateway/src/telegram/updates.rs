//! What Telegram sends the bot: updates (`getUpdates` or the webhook) and the parts of them the
//! bot reads. Parsing is tolerant: every field the bot does not need is optional or ignored, and
//! an update whose shape is unexpected still yields its `update_id`, so it is skipped and
//! confirmed rather than blocking every update behind it.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    pub id: i64,
    #[serde(default)]
    pub is_bot: bool,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub username: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Chat {
    pub id: i64,
    /// `private`, `group`, `supergroup` or `channel`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

impl Chat {
    pub fn is_private(&self) -> bool {
        self.kind.as_deref() == Some("private")
    }
}

/// A shared contact. `user_id` is present when the contact is a Telegram user; a contact
/// shared with the "share my phone number" button is the sender's own.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Contact {
    pub phone_number: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub user_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Message {
    pub message_id: i64,
    pub chat: Chat,
    #[serde(default)]
    pub from: Option<User>,
    #[serde(default)]
    pub date: i64,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub contact: Option<Contact>,
}

/// A press on an inline keyboard button.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CallbackQuery {
    pub id: String,
    pub from: User,
    /// The message the button was on (absent when it is too old for Telegram to send).
    #[serde(default)]
    pub message: Option<Message>,
    #[serde(default)]
    pub data: Option<String>,
}

/// One update, as far as the bot understands it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub update_id: i64,
    pub kind: UpdateKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateKind {
    Message(Message),
    CallbackQuery(CallbackQuery),
    /// Anything else (edited messages, channel posts, member changes…) or an update whose
    /// shape we could not read: confirmed and ignored.
    Other,
}

#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    callback_query: Option<CallbackQuery>,
}

impl Update {
    /// Reads one update. `None` only when it has no `update_id` (then it cannot be confirmed
    /// either, and Telegram never sends such a thing).
    pub fn from_value(value: Value) -> Option<Update> {
        let update_id = value.get("update_id")?.as_i64()?;
        let kind = match serde_json::from_value::<Wire>(value) {
            Ok(Wire {
                message: Some(m), ..
            }) => UpdateKind::Message(m),
            Ok(Wire {
                callback_query: Some(q),
                ..
            }) => UpdateKind::CallbackQuery(q),
            Ok(_) => UpdateKind::Other,
            Err(error) => {
                tracing::warn!(update_id, %error, "unreadable Telegram update; skipping it");
                UpdateKind::Other
            }
        };
        Some(Update { update_id, kind })
    }

    /// The chat the update came from, when it has one.
    pub fn chat_id(&self) -> Option<i64> {
        match &self.kind {
            UpdateKind::Message(m) => Some(m.chat.id),
            UpdateKind::CallbackQuery(q) => q.message.as_ref().map(|m| m.chat.id),
            UpdateKind::Other => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_messages_contacts_and_button_presses() {
        let u = Update::from_value(json!({
            "update_id": 10,
            "message": {
                "message_id": 5, "date": 1, "chat": {"id": 42, "type": "private"},
                "from": {"id": 42, "is_bot": false, "first_name": "Wanjiru", "language_code": "sw"},
                "contact": {"phone_number": "+254708374149", "first_name": "Wanjiru", "user_id": 42},
                "unknown_future_field": {"x": 1}
            }
        }))
        .unwrap();
        let UpdateKind::Message(m) = u.kind else {
            panic!("{u:?}")
        };
        assert!(m.chat.is_private());
        assert_eq!(m.contact.unwrap().user_id, Some(42));

        let u = Update::from_value(json!({
            "update_id": 11,
            "callback_query": {"id": "cq1", "from": {"id": 42, "first_name": "W"},
                "message": {"message_id": 6, "chat": {"id": 42, "type": "private"}, "date": 0},
                "data": "status:pay_1"}
        }))
        .unwrap();
        assert_eq!(u.chat_id(), Some(42));
        assert!(matches!(u.kind, UpdateKind::CallbackQuery(_)));
    }

    #[test]
    fn odd_updates_are_skipped_not_fatal() {
        let u = Update::from_value(json!({"update_id": 12, "edited_message": {"x": 1}})).unwrap();
        assert_eq!(u.kind, UpdateKind::Other);
        // A message without its required chat: still confirmed by its id.
        let u =
            Update::from_value(json!({"update_id": 13, "message": {"message_id": "x"}})).unwrap();
        assert_eq!((u.update_id, u.kind), (13, UpdateKind::Other));
        assert_eq!(Update::from_value(json!({"message": {}})), None);
    }
}

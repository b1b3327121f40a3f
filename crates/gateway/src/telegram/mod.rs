//! Telegram: the Bot API client ([`api`]) shared by the outbox (alerts and receipts) and the
//! customer bot ([`bot`]): updates ([`updates`]) come by long polling ([`poller`]) or webhook
//! ([`webhook_receiver`]); a payment started from a chat is shown in one status message ([`status`]);
//! chats are rate limited ([`rate_limit`]).

pub mod api;
pub mod bot;
pub mod poller;
pub mod rate_limit;
pub mod status;
pub mod updates;
pub mod webhook_receiver;

pub use api::{BotApi, BotApiError, ChatId, SendMessage};
pub use bot::{Bot, BotServices};

/// Escapes text for Telegram's HTML parse mode (which takes HTML's entities): every value that
/// comes from outside (references, descriptions, names, Daraja's texts) goes through this, so
/// no one can close a tag, open a link or forge a line of a message.
pub use mpesa_domain::escape_html;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape_html(r#"<a href="x">&amp;</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;amp;&lt;/a&gt;"
        );
        assert_eq!(escape_html("INV 42 ✓"), "INV 42 ✓");
    }
}

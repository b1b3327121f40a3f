//! Which command a message is, and who may use it.

use std::time::Instant;

use super::text::help_text;
use super::{Bot, BotError};
use crate::outbox::message::clip;
use crate::telegram::escape_html;
use crate::telegram::rate_limit::Verdict;
use crate::telegram::updates::Message;

/// What a message asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Command<'a> {
    Start,
    Help,
    Pay(&'a str),
    Paid(&'a str),
    Status,
    History,
    Unlink,
    Stats,
    Pending,
    Unknown(&'a str),
}

impl Bot {
    pub(super) async fn on_message(&self, update_id: i64, m: Message) -> Result<(), BotError> {
        let Some(from) = m.from.clone().filter(|u| !u.is_bot) else {
            self.count("other");
            return Ok(());
        };
        let chat = m.chat.id;
        let command = m.text.as_deref().and_then(|t| self.parse_command(t));
        // In groups the bot answers commands only (and ignores other bots' commands).
        if !m.chat.is_private() && command.is_none() {
            self.count("other");
            return Ok(());
        }
        match self.limiter.check(chat, Instant::now()) {
            Verdict::Allow => {}
            Verdict::Warn { retry_after } => {
                self.count("rate_limited");
                let text = format!(
                    "⏱ Too many messages. Please wait {} seconds and try again.",
                    retry_after.as_secs().max(1)
                );
                return self.reply(chat, text, None).await;
            }
            Verdict::Ignore => {
                self.count("rate_limited");
                return Ok(());
            }
        }
        // A chat that writes to the bot has not blocked it (any more).
        self.accounts.chat_wrote(chat).await?;
        if let Some(contact) = &m.contact {
            self.count("contact");
            return self.on_contact(&m, &from, contact).await;
        }
        let Some(command) = command else {
            self.count("text");
            return self
                .reply(
                    chat,
                    "Send <code>/pay AMOUNT</code> to pay with M-Pesa, or /help to see what I can do."
                        .into(),
                    None,
                )
                .await;
        };
        let is_admin_chat = Some(chat) == self.admin_chat_id;
        match command {
            Command::Stats | Command::Pending if !is_admin_chat => {
                self.count("not_allowed");
                self.reply(
                    chat,
                    "⛔ That command is for the shop's admin chat only.".into(),
                    None,
                )
                .await
            }
            Command::Stats => {
                self.count("stats");
                self.stats(chat).await
            }
            Command::Pending => {
                self.count("pending");
                self.pending(chat).await
            }
            Command::Help => {
                self.count("help");
                self.reply(chat, help_text(is_admin_chat), None).await
            }
            Command::Unknown(name) => {
                self.count("unknown_command");
                let text = format!(
                    "I don't know /{}. Send /help to see what I can do.",
                    escape_html(&clip(name, 32))
                );
                self.reply(chat, text, None).await
            }
            _ if !m.chat.is_private() => {
                self.count("group");
                self.reply(
                    chat,
                    "Please message me in a private chat to link your number and pay.".into(),
                    None,
                )
                .await
            }
            Command::Start => {
                self.count("start");
                self.start(chat).await
            }
            Command::Pay(args) => {
                self.count("pay");
                self.pay(update_id, &m, &from, args).await
            }
            Command::Paid(args) => {
                self.count("paid");
                self.paid(chat, args).await
            }
            Command::Status => {
                self.count("status");
                self.status(chat).await
            }
            Command::History => {
                self.count("history");
                self.history(chat).await
            }
            Command::Unlink => {
                self.count("unlink");
                self.unlink(chat).await
            }
        }
    }

    /// `/name[@bot] args`; `None` for text that is not a command, or a command for another bot.
    fn parse_command<'a>(&self, text: &'a str) -> Option<Command<'a>> {
        let text = text.trim_start();
        let rest = text.strip_prefix('/')?;
        let (word, args) = match rest.find(char::is_whitespace) {
            Some(i) => (&rest[..i], rest[i..].trim()),
            None => (rest, ""),
        };
        let (name, addressee) = match word.split_once('@') {
            Some((name, bot)) => (name, Some(bot)),
            None => (word, None),
        };
        if let (Some(bot), Some(me)) = (addressee, self.username.get())
            && !me.is_empty()
            && !bot.eq_ignore_ascii_case(me)
        {
            return None;
        }
        if name.is_empty() {
            return None;
        }
        Some(match name.to_ascii_lowercase().as_str() {
            "start" => Command::Start,
            "help" => Command::Help,
            "pay" => Command::Pay(args),
            "paid" => Command::Paid(args),
            "status" => Command::Status,
            "history" => Command::History,
            "unlink" => Command::Unlink,
            "stats" => Command::Stats,
            "pending" => Command::Pending,
            _ => Command::Unknown(name),
        })
    }
}

//! `/pay`: a payment started through the payment service, shown in one status message whose
//! button asks Daraja about it now.

use std::time::Instant;

use mpesa_domain::{AccountReference, Description, Msisdn, PaymentStatus};
use mpesa_storage::{Payment, StorageError};
use serde_json::json;

use super::text::{not_linked_text, parse_amount, printable};
use super::{Bot, BotError, is_transient};
use crate::outbox::message::{clip, ksh};
use crate::payments::{
    IdempotencyKey, NewPaymentRequest, Origin, PaymentError, PushOutcome, PushWhen, StartPayment,
    StartRefused, Started, TELEGRAM_IDEMPOTENCY_SCOPE,
};
use crate::telegram::api::AnswerCallbackQuery;
use crate::telegram::escape_html;
use crate::telegram::rate_limit::Verdict;
use crate::telegram::status::{self, RefreshError, STATUS_BUTTON};
use crate::telegram::updates::{CallbackQuery, Message, User};

impl Bot {
    pub(super) async fn pay(
        &self,
        update_id: i64,
        m: &Message,
        from: &User,
        args: &str,
    ) -> Result<(), BotError> {
        let chat = m.chat.id;
        let (amount_text, reference_text) = match args.split_once(char::is_whitespace) {
            Some((a, r)) => (a, r.trim()),
            None => (args, ""),
        };
        if amount_text.is_empty() {
            return self
                .reply(
                    chat,
                    "How much? Send <code>/pay AMOUNT [REFERENCE]</code>, e.g. \
                     <code>/pay 100</code> or <code>/pay 250 INV42</code>."
                        .into(),
                    None,
                )
                .await;
        }
        let amount = match parse_amount(amount_text, self.amount_bounds) {
            Ok(amount) => amount,
            Err(why) => return self.reply(chat, why, None).await,
        };
        let reference = if reference_text.is_empty() {
            None
        } else {
            match AccountReference::parse(reference_text) {
                Ok(r) => Some(r),
                Err(e) => {
                    let text = format!(
                        "That reference can't be used: it {e}.\n\
                         A reference is 1 to 12 letters, digits, spaces or <code>- _ . / : +</code>.\n\
                         You sent: <code>{}</code>",
                        escape_html(&clip(reference_text, 40))
                    );
                    return self.reply(chat, text, None).await;
                }
            }
        };
        let Some(link) = self.accounts.chat_link(chat).await? else {
            return self.reply(chat, not_linked_text(), None).await;
        };
        let phone = Msisdn::parse(&link.phone).map_err(|_| {
            StorageError::Corrupt(format!(
                "Telegram link of chat {chat} holds an invalid number"
            ))
        })?;
        // `clip` adds an ellipsis: 99 characters and it, within the 100 a description may have.
        let description = Description::parse(&clip(
            &format!("Telegram: {}", printable(&from.first_name)),
            99,
        ))
        .unwrap_or_else(|_| Description::parse("Telegram payment").expect("valid"));
        // The update id keys the payment: an update handed over again resumes it.
        let idempotency = IdempotencyKey::new(
            TELEGRAM_IDEMPOTENCY_SCOPE,
            format!("update:{}:{update_id}", self.bot_id),
            &json!({ "chat": chat, "amount": amount.shillings(), "reference": reference_text }),
        );
        let start = StartPayment {
            request: NewPaymentRequest {
                phone,
                amount,
                reference,
                description: Some(description),
                customer_email: None,
                telegram_chat_id: Some(chat),
                metadata: Some(json!({ "telegram": {
                    "bot_id": self.bot_id, "update_id": update_id, "chat_id": chat, "user_id": from.id,
                }})),
                payment_link_id: None,
                customer_language: None,
            },
            origin: Origin::TelegramChat {
                chat_id: chat,
                sent_at_ms: (m.date > 0).then_some(m.date * 1000),
            },
            idempotency: Some(idempotency),
            // The status message comes first (see `carry_on`).
            push: PushWhen::ByDoor,
            limits: Vec::new(),
        };
        let payment = match self.payments.start(start).await {
            Ok(Started::Stored(p) | Started::Again(p)) => *p,
            Ok(Started::Refused(StartRefused::OpenPayment(open))) => {
                let text = format!(
                    "⏳ A payment is already in progress: <b>{}</b>, reference {}.\n\
                     Finish it on your phone (or let it expire) before starting another one.",
                    ksh(open.amount.shillings()),
                    escape_html(&open.reference)
                );
                return self.reply(chat, text, None).await;
            }
            Ok(Started::Refused(StartRefused::Stale)) => {
                tracing::info!(update_id, chat_id = chat, "a stale /pay was not acted on");
                return self
                    .reply(
                        chat,
                        "⌛ That /pay was sent a while ago and was not started. Send it again to pay now."
                            .into(),
                        None,
                    )
                    .await;
            }
            Ok(other) => {
                tracing::warn!(update_id, outcome = ?other, "unexpected start of a Telegram payment");
                return Ok(());
            }
            Err(PaymentError::Storage(e)) => return Err(e.into()),
            Err(error) => {
                tracing::error!(%error, "could not create a payment from Telegram");
                return self
                    .reply(
                        chat,
                        "Sorry, something went wrong. Please try again.".into(),
                        None,
                    )
                    .await;
            }
        };
        self.carry_on(payment, chat).await
    }

    /// Takes a payment from "stored" to "status message sent, push sent, message updated",
    /// doing only what was not done before: the push always comes after the status message is
    /// recorded, so a payment without one was never pushed, and one with it is never pushed
    /// again.
    pub(super) async fn carry_on(&self, payment: Payment, chat: i64) -> Result<(), BotError> {
        let recorded = self.status_messages.of_payment(&payment.id).await?;
        if recorded.is_none() && payment.status == PaymentStatus::Initiated {
            match status::send_first(&self.api, &self.status_messages, &payment, chat).await {
                Ok(_) => {}
                Err(RefreshError::Storage(e)) => return Err(e.into()),
                Err(RefreshError::Telegram(error)) => {
                    // Not pushed: the payment stays `initiated` and expires unseen.
                    tracing::warn!(payment_id = %payment.id, %error, "could not send the status message; not pushing");
                    return self.telegram_failed(chat, error).await;
                }
            }
            match self.payments.send_push(payment.clone()).await {
                Ok(PushOutcome::Accepted(_)) => {}
                Ok(PushOutcome::Refused { error, .. }) => {
                    tracing::warn!(payment_id = %payment.id, %error, "push refused");
                }
                Ok(PushOutcome::Unknown { .. }) => {}
                Err(PaymentError::Storage(e)) => return Err(e.into()),
                Err(error) => {
                    tracing::error!(payment_id = %payment.id, %error, "push failed");
                }
            }
        }
        self.refresh_status(&payment.id, chat).await
    }

    pub(super) async fn refresh_status(&self, payment_id: &str, chat: i64) -> Result<(), BotError> {
        match status::refresh(&self.api, &self.status_messages, payment_id).await {
            Ok(_) => Ok(()),
            Err(RefreshError::Storage(e)) => Err(e.into()),
            Err(RefreshError::Telegram(error)) => self.telegram_failed(chat, error).await,
        }
    }

    pub(super) async fn on_button(&self, q: CallbackQuery) -> Result<(), BotError> {
        self.count("button");
        let chat = q.message.as_ref().map(|m| m.chat.id);
        let notice = match self
            .limiter
            .check(chat.unwrap_or(q.from.id), Instant::now())
        {
            Verdict::Allow => self.button_notice(&q, chat).await?,
            Verdict::Warn { .. } | Verdict::Ignore => "Too many requests: wait a few seconds.",
        };
        let answer = AnswerCallbackQuery {
            callback_query_id: q.id.clone(),
            text: Some(notice.to_owned()),
        };
        match self.api.answer_callback_query(&answer).await {
            Ok(()) => Ok(()),
            Err(error) if is_transient(&error) => Err(error.into()),
            Err(error) => {
                tracing::debug!(%error, "callback query answer refused (too old?)");
                Ok(())
            }
        }
    }

    pub(super) async fn button_notice(
        &self,
        q: &CallbackQuery,
        chat: Option<i64>,
    ) -> Result<&'static str, BotError> {
        let Some(payment_id) = q
            .data
            .as_deref()
            .and_then(|d| d.strip_prefix(STATUS_BUTTON))
        else {
            return Ok("This button no longer does anything.");
        };
        let Some(payment) = self.payments.reads().find(payment_id).await? else {
            return Ok("No such payment.");
        };
        let Some(chat) = chat.filter(|c| payment.telegram_chat_id == Some(*c)) else {
            return Ok("This payment belongs to another chat.");
        };
        if !payment.status.is_final() && payment.checkout_request_id.is_some() {
            // The customer is looking at it: ask Daraja now rather than at the next check.
            if let Err(error) = self.payments.refresh(&payment.id).await {
                tracing::debug!(payment_id = %payment.id, %error, "STK Query on a button press failed");
            }
        }
        self.refresh_status(&payment.id, chat).await?;
        let now = self
            .payments
            .reads()
            .find(&payment.id)
            .await?
            .unwrap_or(payment);
        Ok(status::short_status(&now))
    }
}

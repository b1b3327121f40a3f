//! Who hears about a payment, planned inside the transaction that changes it (the outbox).
//!
//! For each final state first reached: a signed webhook to the merchant's app, a Telegram alert
//! to the admin chat, a receipt to the customer (email and/or Telegram) when it completed, and
//! an admin email when it failed. A payment started from the Telegram bot gets no separate
//! Telegram receipt: its chat's status message is edited to the final state (completed with
//! the receipt number, or why it did not), whatever that state is. A payment held for review alerts the admin. Each row has a
//! dedupe key, so a second write of the same fact adds nothing.

use mpesa_domain::{FinalOutcome, Transition};
use mpesa_storage::{Channel, NewOutboxEvent, Payment, PaymentSource};
use serde_json::json;

use crate::config::Config;
use crate::ids::new_id;
use crate::payments::view::PaymentView;

/// The channels this deployment has, read once from the configuration.
#[derive(Debug, Clone, Default)]
pub struct NotificationPlan {
    pub webhook_url: Option<String>,
    pub email: bool,
    pub admin_email: Option<String>,
    pub telegram: bool,
    pub admin_chat_id: Option<i64>,
}

/// Event types carried by email and Telegram rows besides `payment.*`.
pub const RECEIPT: &str = "receipt";
pub const HELD_FOR_REVIEW: &str = "payment.held_for_review";
/// The kind of Telegram row that edits the bot's status message of a payment started from a
/// chat to its final state (see `telegram::status`).
pub const STATUS_MESSAGE: &str = "status_message";

impl NotificationPlan {
    pub fn from_config(c: &Config) -> Self {
        NotificationPlan {
            webhook_url: c.webhook.as_ref().map(|w| w.url.to_string()),
            email: c.email.is_some(),
            admin_email: c.email.as_ref().and_then(|e| e.admin_email.clone()),
            telegram: c.telegram.is_some(),
            admin_chat_id: c.telegram.as_ref().and_then(|t| t.admin_chat_id),
        }
    }

    /// The outbox rows for a transition, given the payment as it will be after it.
    pub fn for_transition(&self, after: &Payment, t: &Transition, now: i64) -> Vec<NewOutboxEvent> {
        let mut rows = Vec::new();
        // Made only for a row that carries it: most deployments have few channels, and this
        // runs for every callback.
        let view_cell = std::cell::OnceCell::new();
        let view = || view_cell.get_or_init(|| PaymentView::from(after));
        if let Some(outcome) = t.notify {
            let event_type = outcome.event_type();
            if let Some(url) = &self.webhook_url {
                let id = new_id("evt");
                let body =
                    json!({ "id": id, "type": event_type, "created": now / 1000, "data": view() });
                rows.push(row(
                    id,
                    after,
                    Channel::Webhook,
                    event_type,
                    url,
                    body.to_string(),
                    now,
                ));
            }
            if self.telegram {
                if let Some(admin) = self.admin_chat_id {
                    let payload = json!({ "kind": "admin_alert", "payment": view() });
                    rows.push(row(
                        new_id("evt"),
                        after,
                        Channel::Telegram,
                        event_type,
                        &admin.to_string(),
                        payload.to_string(),
                        now,
                    ));
                }
                if after.source == PaymentSource::Telegram
                    && let Some(chat) = after.telegram_chat_id
                {
                    // Started from the bot: its status message moves to the final state (an
                    // edit), and that is the receipt; no second message. Keyed by the event as
                    // every row is: a payment that timed out and was then settled by a person
                    // reaches a second final event, whose edit must not be taken for a copy of
                    // the first.
                    let payload = json!({ "kind": STATUS_MESSAGE, "payment": view() });
                    let mut r = row(
                        new_id("evt"),
                        after,
                        Channel::Telegram,
                        event_type,
                        &chat.to_string(),
                        payload.to_string(),
                        now,
                    );
                    r.dedupe_key =
                        format!("{}:telegram:{STATUS_MESSAGE}:{event_type}:{chat}", after.id);
                    rows.push(r);
                } else if outcome == FinalOutcome::Completed
                    && let Some(chat) = after.telegram_chat_id
                    && Some(chat) != self.admin_chat_id
                {
                    let payload = json!({ "kind": "customer_receipt", "payment": view() });
                    rows.push(row(
                        new_id("evt"),
                        after,
                        Channel::Telegram,
                        RECEIPT,
                        &chat.to_string(),
                        payload.to_string(),
                        now,
                    ));
                }
            }
            if self.email {
                if outcome == FinalOutcome::Completed
                    && let Some(to) = &after.customer_email
                {
                    let payload = json!({ "kind": "customer_receipt", "payment": view() });
                    rows.push(row(
                        new_id("evt"),
                        after,
                        Channel::Email,
                        RECEIPT,
                        to,
                        payload.to_string(),
                        now,
                    ));
                }
                if outcome == FinalOutcome::Failed
                    && let Some(admin) = &self.admin_email
                {
                    let payload = json!({ "kind": "admin_alert", "payment": view() });
                    rows.push(row(
                        new_id("evt"),
                        after,
                        Channel::Email,
                        event_type,
                        admin,
                        payload.to_string(),
                        now,
                    ));
                }
            }
        }
        if let Some(reason) = t.holds_for_review() {
            // A payment can be held more than once (several odd callbacks): key by version.
            rows.extend(self.review_alerts(
                after,
                &reason.describe(),
                &after.version.to_string(),
                now,
            ));
        }
        rows
    }

    /// What people hear of a completion through a single-use link when storage finds the link
    /// already paid by another payment and holds this one for review: written *instead of*
    /// [`NotificationPlan::for_transition`]'s rows ([`PaymentUpdate::if_link_already_paid`]).
    /// The merchant gets `payment.held_for_review` (the payment with `needs_review: true`), the
    /// admin "held for review, refund suggested"; nobody hears that it completed, and the
    /// customer gets no receipt (the pay page tells them it will be checked). An admin who
    /// settles it later makes it `payment.completed` then.
    ///
    /// [`PaymentUpdate::if_link_already_paid`]: mpesa_storage::PaymentUpdate
    pub fn for_link_already_paid(&self, after: &Payment, now: i64) -> Vec<NewOutboxEvent> {
        let Some(link) = &after.payment_link_id else {
            return Vec::new();
        };
        // The hold storage will apply (`mpesa_domain::link::on_already_paid`); it puts the id of
        // the payment that paid the link in place of the mark.
        let mut held = after.clone();
        mpesa_domain::link::on_already_paid(after.status, link, mpesa_domain::link::PAID_BY_MARK)
            .apply(held.fields_mut(), now);
        let reason = held.review_reason.clone().unwrap_or_default();
        let mut rows = Vec::new();
        if let Some(url) = &self.webhook_url {
            let id = new_id("evt");
            let body = json!({
                "id": id,
                "type": HELD_FOR_REVIEW,
                "created": now / 1000,
                "data": PaymentView::from(&held),
            });
            let mut r = row(
                id,
                after,
                Channel::Webhook,
                HELD_FOR_REVIEW,
                url,
                body.to_string(),
                now,
            );
            r.dedupe_key.push_str(":link");
            rows.push(r);
        }
        rows.extend(self.review_alerts(&held, &reason, "link", now));
        rows
    }

    /// "Held for review" to the admin's Telegram chat and email; `suffix` keeps each hold's
    /// rows apart.
    fn review_alerts(
        &self,
        after: &Payment,
        reason: &str,
        suffix: &str,
        now: i64,
    ) -> Vec<NewOutboxEvent> {
        let mut rows = Vec::new();
        let view = PaymentView::from(after);
        {
            let payload = json!({ "kind": "review_alert", "reason": reason, "payment": view });
            if self.telegram
                && let Some(admin) = self.admin_chat_id
            {
                let mut r = row(
                    new_id("evt"),
                    after,
                    Channel::Telegram,
                    HELD_FOR_REVIEW,
                    &admin.to_string(),
                    payload.to_string(),
                    now,
                );
                r.dedupe_key.push_str(&format!(":{suffix}"));
                rows.push(r);
            }
            if self.email
                && let Some(admin) = &self.admin_email
            {
                let mut r = row(
                    new_id("evt"),
                    after,
                    Channel::Email,
                    HELD_FOR_REVIEW,
                    admin,
                    payload.to_string(),
                    now,
                );
                r.dedupe_key.push_str(&format!(":{suffix}"));
                rows.push(r);
            }
        }
        rows
    }
}

fn row(
    id: String,
    p: &Payment,
    channel: Channel,
    event_type: &str,
    destination: &str,
    payload: String,
    now: i64,
) -> NewOutboxEvent {
    NewOutboxEvent {
        dedupe_key: format!(
            "{}:{}:{}:{}",
            p.id,
            channel.as_str(),
            event_type,
            destination
        ),
        id,
        payment_id: Some(p.id.clone()),
        channel,
        event_type: event_type.to_owned(),
        destination: destination.to_owned(),
        payload,
        created_at: now,
    }
}

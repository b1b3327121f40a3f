//! One module per page, and the rows that several pages show.

pub mod api_keys;
pub mod links;
pub mod outbox;
pub mod overview;
pub mod payment;
pub mod payments;
pub mod payouts;
pub mod receipts;
pub mod received_callbacks;
pub mod refund;
pub mod settings;
pub mod sign_in;
pub mod stylesheet;
pub mod users;

use askama::Template;
use axum::response::{Html, IntoResponse, Response};
use mpesa_storage::{Channel, OutboxEvent, OutboxStatus, Payment, RawCallback};

use crate::admin::error::AdminError;
use crate::admin::format;
use crate::config::mask_url;

/// Renders a page as `text/html`.
pub fn render(page: &impl Template) -> Result<Response, AdminError> {
    Ok(Html(page.render()?).into_response())
}

/// A payment in a list.
pub struct PaymentRow {
    pub href: String,
    pub id: String,
    pub status: String,
    pub badge: String,
    pub amount: String,
    pub phone: String,
    pub payer_name: Option<String>,
    pub channel: &'static str,
    pub reference: String,
    pub receipt: String,
    pub created: String,
    pub created_machine: String,
    pub needs_review: bool,
}

impl From<&Payment> for PaymentRow {
    fn from(p: &Payment) -> Self {
        PaymentRow {
            href: payment_href(&p.id),
            id: p.id.clone(),
            status: format::label(p.status.as_str()),
            badge: format::badge_class(p.status.as_str()),
            amount: format::money(p.amount.shillings()),
            phone: p.payer(),
            payer_name: p.payer_name.clone(),
            channel: match p.channel {
                mpesa_storage::PaymentChannel::Stk => "STK push",
                mpesa_storage::PaymentChannel::C2b => "Paybill/till",
            },
            reference: p.reference.clone(),
            receipt: p.mpesa_receipt_number.clone().unwrap_or_default(),
            created: format::when(p.created_at),
            created_machine: format::machine_time(p.created_at),
            needs_review: p.needs_review,
        }
    }
}

/// An outbox event in a list.
pub struct OutboxRow {
    pub href: String,
    pub id: String,
    pub channel: &'static str,
    pub event_type: String,
    pub destination: String,
    pub status: String,
    pub badge: String,
    pub attempts: i32,
    pub next_attempt: String,
    pub last_error: String,
    pub payment_href: String,
    pub payment_id: String,
    pub created: String,
    pub retryable: bool,
}

impl From<&OutboxEvent> for OutboxRow {
    fn from(e: &OutboxEvent) -> Self {
        OutboxRow {
            href: format!("/admin/outbox/{}", path_segment(&e.id)),
            id: e.id.clone(),
            channel: e.channel.as_str(),
            event_type: e.event_type.clone(),
            destination: destination(e),
            status: format::label(e.status.as_str()),
            badge: format::badge_class(e.status.as_str()),
            attempts: e.attempts,
            next_attempt: if e.status == OutboxStatus::Pending {
                format::when(e.next_attempt_at)
            } else {
                String::new()
            },
            last_error: e
                .last_error
                .as_deref()
                .map(|m| format::preview(m, 160))
                .unwrap_or_default(),
            payment_href: e
                .payment_id
                .as_deref()
                .map(payment_href)
                .unwrap_or_default(),
            payment_id: e.payment_id.clone().unwrap_or_default(),
            created: format::when(e.created_at),
            retryable: matches!(e.status, OutboxStatus::Dead | OutboxStatus::Blocked),
        }
    }
}

/// Where an event goes. A webhook URL may carry a token in its query or credentials: masked.
pub fn destination(e: &OutboxEvent) -> String {
    match e.channel {
        Channel::Webhook => mask_url(&e.destination),
        Channel::Email | Channel::Telegram => e.destination.clone(),
    }
}

/// A stored callback in a list.
pub struct CallbackRow {
    pub href: String,
    pub id: String,
    pub kind: &'static str,
    pub outcome: String,
    pub badge: String,
    pub received: String,
    pub checkout_request_id: String,
    pub payment_href: String,
    pub payment_id: String,
    pub error: String,
    pub preview: String,
}

impl From<&RawCallback> for CallbackRow {
    fn from(c: &RawCallback) -> Self {
        let text = String::from_utf8_lossy(&c.body);
        CallbackRow {
            href: format!("/admin/callbacks/{}", path_segment(&c.id)),
            id: c.id.clone(),
            kind: c.kind.as_str(),
            outcome: format::label(c.outcome.as_str()),
            badge: format::badge_class(c.outcome.as_str()),
            received: format::when_precise(c.received_at),
            checkout_request_id: c.checkout_request_id.clone().unwrap_or_default(),
            payment_href: c
                .payment_id
                .as_deref()
                .map(payment_href)
                .unwrap_or_default(),
            payment_id: c.payment_id.clone().unwrap_or_default(),
            error: c
                .error
                .as_deref()
                .map(|m| format::preview(m, 160))
                .unwrap_or_default(),
            preview: format::preview(&text, 120),
        }
    }
}

pub fn payment_href(id: &str) -> String {
    format!("/admin/payments/{}", path_segment(id))
}

/// An id as one URL path segment. Our ids are letters, digits and `_`; anything else (an id
/// that came from outside) is percent-encoded so it cannot change the link's shape.
pub fn path_segment(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

/// A `<select>` option.
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

pub fn choices<'a>(
    values: impl IntoIterator<Item = &'a str>,
    selected: Option<&str>,
) -> Vec<Choice> {
    values
        .into_iter()
        .map(|v| Choice {
            value: v.to_owned(),
            label: format::label(v),
            selected: Some(v) == selected,
        })
        .collect()
}

/// A label and a value on a details page; empty values are left out.
pub struct Fact {
    pub label: &'static str,
    pub value: String,
    pub mono: bool,
}

pub fn facts(rows: Vec<(&'static str, Option<String>, bool)>) -> Vec<Fact> {
    rows.into_iter()
        .filter_map(|(label, value, mono)| {
            value
                .filter(|v| !v.is_empty())
                .map(|value| Fact { label, value, mono })
        })
        .collect()
}

//! `GET /admin/payments/{id}`: one payment's whole story on a timeline: the request as stored,
//! Daraja's answer to the push, every raw callback (pretty-printed), every STK Query, every
//! notification and each of its delivery attempts, and what people decided.
//!
//! Actions (POST, CSRF-checked): ask Daraja now (`/query`), and for a payment held for review,
//! settle or reject it with a note (`/decide`) that is kept on the timeline with the admin's name.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use mpesa_domain::TransitionKind;
use mpesa_storage::{
    OutboxAttempt, OutboxEvent, Payment, PaymentEvent, RawCallback, Refund, RefundStatus,
    StorageError,
};

use crate::admin::csrf::ActionForm;
use crate::admin::error::AdminError;
use crate::admin::format;
use crate::admin::layout::{self, Layout, Section};
use crate::admin::pages::render;
use crate::admin::pages::{Fact, destination, facts, path_segment, payment_href};
use crate::admin::params::Params;
use crate::admin::session::Admin;
use crate::money_out::Hold;
use crate::money_out::refunds::refund_refusal;
use crate::payments::{AdminDecision, PaymentError};
use crate::state::AppState;

const MAX_NOTE_CHARS: usize = 500;

/// One entry of the timeline.
pub struct Entry {
    pub at: i64,
    /// Among entries at the same millisecond, the order they happened in.
    pub order: u8,
    pub when: String,
    pub machine: String,
    /// `t-callback`, `t-daraja`, `t-admin`, `t-notify`, `t-problem` or empty.
    pub class: &'static str,
    pub title: String,
    pub summary: String,
    pub body: String,
    pub body_label: &'static str,
    /// Raw callbacks are shown unfolded; other details folded.
    pub open: bool,
    pub link_href: String,
    pub link_text: String,
}

impl Entry {
    pub fn new(at: i64, order: u8, class: &'static str, title: impl Into<String>) -> Self {
        Entry {
            at,
            order,
            when: format::when_precise(at),
            machine: format::machine_time(at),
            class,
            title: title.into(),
            summary: String::new(),
            body: String::new(),
            body_label: "Details",
            open: false,
            link_href: String::new(),
            link_text: String::new(),
        }
    }
}

#[derive(Template)]
#[template(path = "admin/payment.html")]
struct PaymentPage {
    layout: Layout,
    id: String,
    status: String,
    badge: String,
    amount: String,
    needs_review: bool,
    review_reason: String,
    /// The payment link it came through: its page and title (empty for none).
    link_href: String,
    link_title: String,
    request: Vec<Fact>,
    outcome: Vec<Fact>,
    metadata: String,
    timeline: Vec<Entry>,
    can_query: bool,
    query_action: String,
    decide_action: String,
    /// The latest refund of this payment, when there is one.
    refund: Option<RefundBox>,
    /// The Refund button's confirmation page, when the payment can be refunded now.
    refund_href: Option<String>,
    /// The refund page's "Record the outcome" form, when the refund is held for a person.
    refund_settle_href: Option<String>,
    /// The refund page's "Acknowledge" form, when M-Pesa contradicts the refund's outcome
    /// recorded by hand.
    refund_acknowledge_href: Option<String>,
}

/// A refund as the payment's page shows it.
pub struct RefundBox {
    pub status: String,
    pub badge: String,
    pub facts: Vec<Fact>,
}

impl RefundBox {
    fn new(r: &Refund) -> Self {
        RefundBox {
            status: format::label(r.status.as_str()),
            badge: format::badge_class(r.status.as_str()),
            facts: facts(vec![
                ("Refund id", Some(r.id.clone()), true),
                ("Amount", Some(format::money(r.amount)), false),
                ("Reason", Some(r.reason.clone()), false),
                ("Requested by", Some(r.requested_by.clone()), false),
                ("Requested", Some(format::when_precise(r.created_at)), false),
                (
                    "Result",
                    r.result_code
                        .as_ref()
                        .map(|c| format!("{c}: {}", r.result_desc.as_deref().unwrap_or_default())),
                    false,
                ),
                ("Reversal receipt", r.reversal_receipt.clone(), true),
                (
                    "Final since",
                    r.finalized_at.map(format::when_precise),
                    false,
                ),
            ]),
        }
    }
}

/// The refund that blocks another one (pending or completed), if any.
pub fn active_refund(refunds: &[Refund]) -> Option<&Refund> {
    refunds
        .iter()
        .rev()
        .find(|r| matches!(r.status, RefundStatus::Pending | RefundStatus::Completed))
}

pub async fn show(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Params(params): Params,
) -> Result<Response, AdminError> {
    let Some(record) = state.payments.reads().record(&id).await? else {
        return Err(AdminError::NotFound("There is no such payment."));
    };
    let timeline = timeline(
        &record.events,
        &record.callbacks,
        &record.outbox,
        &record.attempts,
    );
    let (p, refunds) = (record.payment, record.refunds);
    let refund_hold = match refunds.last() {
        Some(r) => state.money_out.refunds.hold(r).await?,
        None => Hold::No,
    };
    let refund_pending = refunds
        .last()
        .is_some_and(|r| r.status == RefundStatus::Pending);
    let refund_held = refund_hold == Hold::Open && refund_pending;
    let refund_contradicted = refund_hold == Hold::Contradicted;
    let (link_href, link_title) = match (&p.payment_link_id, record.link_title) {
        (Some(link_id), Some(title)) => (crate::admin::pages::links::link_href(link_id), title),
        _ => (String::new(), String::new()),
    };

    let page = PaymentPage {
        layout: Layout::new(
            format!("Payment {}", p.reference),
            Section::Payments,
            &admin.session,
        )
        .with_notice(layout::notice(params.get("notice"))),
        id: p.id.clone(),
        status: format::label(p.status.as_str()),
        badge: format::badge_class(p.status.as_str()),
        amount: format::money(p.amount.shillings()),
        needs_review: p.needs_review,
        review_reason: p.review_reason.clone().unwrap_or_default(),
        link_href,
        link_title,
        request: request_facts(&p),
        outcome: outcome_facts(&p),
        metadata: p
            .metadata
            .as_deref()
            .map(format::pretty_json)
            .unwrap_or_default(),
        timeline,
        can_query: p.checkout_request_id.is_some(),
        query_action: format!("{}/query", payment_href(&p.id)),
        decide_action: format!("{}/decide", payment_href(&p.id)),
        refund: refunds.last().map(RefundBox::new),
        refund_href: refund_refusal(&p, active_refund(&refunds))
            .is_none()
            .then(|| format!("{}/refund", payment_href(&p.id))),
        refund_settle_href: refund_held.then(|| format!("{}/refund", payment_href(&p.id))),
        refund_acknowledge_href: refund_contradicted
            .then(|| format!("{}/refund", payment_href(&p.id))),
    };
    render(&page)
}

fn request_facts(p: &Payment) -> Vec<Fact> {
    facts(vec![
        ("Payment id", Some(p.id.clone()), true),
        (
            "Channel",
            Some(
                match p.channel {
                    mpesa_storage::PaymentChannel::Stk => "STK push",
                    mpesa_storage::PaymentChannel::C2b => "Paybill/till (C2B)",
                }
                .to_owned(),
            ),
            false,
        ),
        (
            "Phone",
            p.phone.as_ref().map(|m| m.as_str().to_owned()),
            true,
        ),
        ("MSISDN as given", p.payer_msisdn.clone(), true),
        ("Payer name", p.payer_name.clone(), false),
        ("Amount", Some(format::money(p.amount.shillings())), false),
        ("Account / reference", Some(p.reference.clone()), true),
        ("Paid to shortcode", p.business_short_code.clone(), true),
        (
            "Recovered by",
            p.recovered_by.as_deref().map(|r| match r {
                "pull" => "Pull Transactions (its confirmation never came)".to_owned(),
                "status" => "Transaction Status check (its confirmation never came)".to_owned(),
                other => other.to_owned(),
            }),
            false,
        ),
        ("Description", Some(p.description.clone()), false),
        ("Customer email", p.customer_email.clone(), false),
        (
            "Telegram chat",
            p.telegram_chat_id.map(|c| c.to_string()),
            true,
        ),
        ("Started from", Some(p.source.as_str().to_owned()), false),
        (
            "Customer's language",
            p.customer_language.map(|l| match l {
                mpesa_domain::Lang::En => "English".to_owned(),
                mpesa_domain::Lang::Sw => "Swahili".to_owned(),
            }),
            false,
        ),
        ("API key", p.api_key_id.clone(), true),
        ("Created", Some(format::when_precise(p.created_at)), false),
    ])
}

fn outcome_facts(p: &Payment) -> Vec<Fact> {
    facts(vec![
        ("M-Pesa receipt", p.mpesa_receipt_number.clone(), true),
        (
            "Result",
            p.result_code
                .as_ref()
                .map(|c| format!("{c}: {}", p.result_desc.as_deref().unwrap_or_default())),
            false,
        ),
        (
            "Paid at (M-Pesa)",
            p.transaction_date.map(format::when_precise),
            false,
        ),
        ("CheckoutRequestID", p.checkout_request_id.clone(), true),
        ("MerchantRequestID", p.merchant_request_id.clone(), true),
        ("Queries made", Some(p.query_attempts.to_string()), false),
        (
            "Next check",
            p.next_check_at.map(format::when_precise),
            false,
        ),
        (
            "Final since",
            p.finalized_at.map(format::when_precise),
            false,
        ),
        (
            "Last change",
            Some(format::when_precise(p.updated_at)),
            false,
        ),
    ])
}

/// Events, callbacks, notifications and attempts in the order they happened.
fn timeline(
    events: &[PaymentEvent],
    callbacks: &[RawCallback],
    outbox: &[OutboxEvent],
    attempts: &[Vec<OutboxAttempt>],
) -> Vec<Entry> {
    let mut entries = Vec::new();
    for e in events {
        let (class, title) = event_title(&e.kind);
        let mut entry = Entry::new(e.at, 1, class, title);
        entry.summary = event_summary(e);
        entry.body = format::pretty_json(&e.detail);
        entries.push(entry);
    }
    for c in callbacks {
        // The raw callback is stored before its effect is written: it comes first.
        let mut entry = Entry::new(
            c.received_at,
            0,
            "t-callback",
            format!("Callback received ({})", format::label(c.outcome.as_str())),
        );
        let (text, lossy) = format::body_text(&c.body);
        entry.summary = match (&c.error, lossy) {
            (Some(error), _) => format!("Could not be parsed: {error}"),
            (None, true) => "The body is not UTF-8; shown with replacement characters.".into(),
            (None, false) => String::new(),
        };
        entry.body = text;
        entry.body_label = "Raw body";
        entry.open = true;
        entry.link_href = format!("/admin/callbacks/{}", path_segment(&c.id));
        entry.link_text = format!("Callback {}", c.id);
        entries.push(entry);
    }
    for (e, attempts) in outbox.iter().zip(attempts) {
        let mut entry = Entry::new(
            e.created_at,
            2,
            "t-notify",
            format!(
                "{} queued: {}",
                channel_name(e.channel.as_str()),
                e.event_type
            ),
        );
        entry.summary = format!(
            "To {}. Now {} after {} attempt{}.",
            destination(e),
            format::label(e.status.as_str()).to_lowercase(),
            e.attempts,
            if e.attempts == 1 { "" } else { "s" }
        );
        entry.link_href = format!("/admin/outbox/{}", path_segment(&e.id));
        entry.link_text = format!("Event {}", e.id);
        entries.push(entry);
        for a in attempts {
            let failed = a.result != "delivered";
            let mut entry = Entry::new(
                a.started_at,
                3,
                if failed { "t-problem" } else { "t-notify" },
                format!(
                    "{} attempt {}: {}",
                    channel_name(e.channel.as_str()),
                    a.attempt,
                    a.result
                ),
            );
            entry.summary = [
                a.response_code.map(|c| format!("Answer {c}.")),
                a.error.clone(),
                Some(format!("Took {} ms.", a.duration_ms)),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
            entries.push(entry);
        }
    }
    entries.sort_by_key(|e| (e.at, e.order));
    entries
}

fn channel_name(channel: &str) -> &'static str {
    match channel {
        "webhook" => "Webhook",
        "email" => "Email",
        "telegram" => "Telegram message",
        _ => "Notification",
    }
}

/// A timeline entry's class and title: a transition's by its `TransitionKind`, the others
/// (creation, refunds) by their names.
fn event_title(kind: &str) -> (&'static str, String) {
    use TransitionKind as K;
    let (class, title) = match TransitionKind::parse(kind) {
        Some(K::PushAccepted) => ("t-daraja", "Daraja accepted the STK push"),
        Some(K::PushRefused) => ("t-problem", "Daraja refused the STK push"),
        Some(K::PushOutcomeUnknown) => (
            "t-problem",
            "STK push outcome unknown (not sent again; the reconciler will ask)",
        ),
        Some(K::Callback) => ("t-callback", "Callback applied"),
        Some(K::Query) => ("t-daraja", "STK Query"),
        Some(K::Expired) => ("t-problem", "Given up: no answer in time"),
        Some(K::HeldForReview) => ("t-problem", "Held for review"),
        Some(K::AdminSettled) => ("t-admin", "Settled by an admin"),
        Some(K::AdminRejected) => ("t-admin", "Rejected by an admin"),
        Some(K::CallbackAdopted | K::C2bConfirmation | K::C2bPull | K::C2bStatus) => {
            return ("", format::label(kind));
        }
        None => match kind {
            "created" => ("", "Payment request stored"),
            "refund_requested" => ("t-admin", "Refund requested"),
            "reversal_sent" => ("t-daraja", "Reversal sent to M-Pesa"),
            "refund_completed" => ("t-daraja", "Refunded: M-Pesa reversed the payment"),
            "refund_failed" => ("t-problem", "Refund failed"),
            "refund_acknowledged" => (
                "t-admin",
                "Refund's contradiction acknowledged: no longer held",
            ),
            other => return ("", format::label(other)),
        },
    };
    (class, title.to_owned())
}

/// One line from an event's detail that says what happened, when there is one.
fn event_summary(e: &PaymentEvent) -> String {
    let detail: serde_json::Value = serde_json::from_str(&e.detail).unwrap_or_default();
    let text = |key: &str| detail.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    use TransitionKind as K;
    match TransitionKind::parse(&e.kind) {
        Some(K::AdminSettled | K::AdminRejected) => {
            let by = text("by").unwrap_or_else(|| "someone".into());
            let note = text("note").unwrap_or_default();
            match text("receipt") {
                Some(receipt) => format!("By {by}, receipt {receipt}: {note}"),
                None => format!("By {by}: {note}"),
            }
        }
        Some(K::Query | K::Callback) => match (text("result_code"), text("result_desc")) {
            (Some(code), Some(desc)) => format!("Result {code}: {desc}"),
            _ => text("error").unwrap_or_default(),
        },
        Some(K::PushRefused) => text("error_message").unwrap_or_default(),
        Some(K::PushOutcomeUnknown) => text("error").unwrap_or_default(),
        Some(K::PushAccepted) => text("customer_message").unwrap_or_default(),
        Some(
            K::CallbackAdopted
            | K::Expired
            | K::HeldForReview
            | K::C2bConfirmation
            | K::C2bPull
            | K::C2bStatus,
        ) => String::new(),
        None => match e.kind.as_str() {
            "created" => text("source")
                .map(|s| format!("Started from {s}."))
                .unwrap_or_default(),
            "refund_requested" => format!(
                "By {}: {}",
                text("requested_by").unwrap_or_else(|| "someone".into()),
                text("reason").unwrap_or_default()
            ),
            "refund_completed" | "refund_failed" => {
                match (text("result_code"), text("result_desc")) {
                    // Recorded by a person: who, what they saw, and their note.
                    _ if text("by").is_some() => {
                        let by = text("by").unwrap_or_default();
                        let note = text("note").unwrap_or_default();
                        match text("reversal_receipt") {
                            Some(receipt) => format!("By {by}, receipt {receipt}: {note}"),
                            None => format!("By {by}: {note}"),
                        }
                    }
                    (Some(code), Some(desc)) => format!("Result {code}: {desc}"),
                    _ => String::new(),
                }
            }
            "refund_acknowledged" => format!(
                "By {}: {}",
                text("by").unwrap_or_else(|| "someone".into()),
                text("note").unwrap_or_default()
            ),
            _ => String::new(),
        },
    }
}

/// `POST /admin/payments/{id}/query`: an STK Query now. Its answer (or failure) is on the
/// timeline either way.
pub async fn query(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: ActionForm,
) -> Result<Response, AdminError> {
    let username = &form.admin.session.username;
    let notice = match state.payments.refresh(&id).await {
        Ok(p) => {
            tracing::info!(payment_id = %p.id, %username, status = p.status.as_str(), "STK Query from the dashboard");
            "queried"
        }
        Err(PaymentError::NotQueryable { .. }) => "not_queryable",
        Err(PaymentError::Daraja(error)) => {
            tracing::warn!(payment_id = %id, %username, %error, "STK Query from the dashboard failed");
            "query_failed"
        }
        Err(other) => return Err(other.into()),
    };
    Ok(Redirect::to(&format!("{}?notice={notice}", payment_href(&id))).into_response())
}

/// `POST /admin/payments/{id}/decide`: settle or reject a held payment, with a note.
pub async fn decide(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: ActionForm,
) -> Result<Response, AdminError> {
    let decision = match form.fields.get("decision") {
        Some("settle") => AdminDecision::Settle,
        Some("reject") => AdminDecision::Reject,
        _ => return Err(AdminError::BadRequest("Choose settle or reject.".into())),
    };
    let back = |notice: &str| -> Result<Response, AdminError> {
        Ok(Redirect::to(&format!("{}?notice={notice}", payment_href(&id))).into_response())
    };
    let note = form.fields.get("note").unwrap_or_default();
    if note.is_empty() {
        return back("note_required");
    }
    if note.chars().count() > MAX_NOTE_CHARS {
        return Err(AdminError::BadRequest(format!(
            "The note is too long (at most {MAX_NOTE_CHARS} characters)."
        )));
    }
    let receipt = form
        .fields
        .text("receipt", "Receipt")
        .map_err(AdminError::BadRequest)?;
    if receipt
        .as_deref()
        .is_some_and(|r| r.len() > 20 || !r.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        return Err(AdminError::BadRequest(
            "An M-Pesa receipt is letters and digits, like SGA1XYZ123.".into(),
        ));
    }
    let receipt = receipt.map(|r| r.to_uppercase());
    let username = form.admin.session.username.clone();
    let decided = match state
        .payments
        .admin_decide(&id, decision, note, receipt.as_deref(), &username)
        .await
    {
        Err(PaymentError::Storage(StorageError::Conflict(rule)))
            if rule.contains("mpesa_receipt_number") =>
        {
            return back("receipt_in_use");
        }
        other => other?,
    };
    let label = match decision {
        AdminDecision::Settle => "settled",
        AdminDecision::Reject => "rejected",
    };
    match decided {
        Some(p) => {
            tracing::info!(payment_id = %p.id, %username, decision = label, status = p.status.as_str(), "payment decided from the dashboard");
            back(label)
        }
        None => back("not_held"),
    }
}

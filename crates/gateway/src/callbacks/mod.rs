//! Callbacks from Safaricom: parsing, the decision each one leads to, and durable ingestion with
//! group commit.

pub mod ingest;
mod redrive;

pub use ingest::{CallbackIngestor, IngestError};

use std::collections::HashMap;

use daraja::StkCallback;
use mpesa_domain::{CallbackReport, state_machine};
use mpesa_storage::{
    CallbackDecision, CallbackOutcome, IncomingCallback, NewPaymentEvent, Payment,
};
use serde_json::json;

use crate::payments::NotificationPlan;
use crate::payments::service::build_update;

/// An STK callback body, parsed as far as it goes.
pub struct ParsedStk {
    pub checkout_request_id: Option<String>,
    pub merchant_request_id: Option<String>,
    pub report: Result<CallbackReport, String>,
}

/// Parses an STK callback body. When the strict parse fails, the CheckoutRequestID is still
/// looked for, so the stored body can be linked to its payment.
pub fn parse_stk(body: &[u8]) -> ParsedStk {
    match StkCallback::parse(body) {
        Ok(cb) => ParsedStk {
            checkout_request_id: Some(cb.checkout_request_id().to_owned())
                .filter(|s| !s.is_empty()),
            merchant_request_id: Some(cb.merchant_request_id().to_owned())
                .filter(|s| !s.is_empty()),
            report: cb.to_report().map_err(|e| e.to_string()),
        },
        Err(e) => ParsedStk {
            checkout_request_id: serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| {
                    v.pointer("/Body/stkCallback/CheckoutRequestID")
                        .and_then(|c| c.as_str())
                        .map(str::to_owned)
                })
                .filter(|s| !s.is_empty() && s.len() <= 100),
            merchant_request_id: None,
            report: Err(e.to_string()),
        },
    }
}

/// The decision for an STK callback, given the payment it names (locked by storage).
pub fn decide_stk(
    plan: &NotificationPlan,
    incoming: &IncomingCallback,
    report: Option<&CallbackReport>,
    payment: Option<&Payment>,
    now: i64,
) -> CallbackDecision {
    if incoming.kind != mpesa_storage::CallbackKind::Stk {
        // C2B and initiator results are kept for audit and the dashboard; nothing acts on them yet.
        return CallbackDecision {
            outcome: CallbackOutcome::Stored,
            update: None,
            outbox: Vec::new(),
        };
    }
    let Some(report) = report else {
        return CallbackDecision {
            outcome: CallbackOutcome::Unparseable,
            update: None,
            outbox: Vec::new(),
        };
    };
    let Some(payment) = payment else {
        return CallbackDecision {
            outcome: CallbackOutcome::Unmatched,
            update: None,
            outbox: Vec::new(),
        };
    };
    let outcome = state_machine::on_callback(&payment.snapshot(), report);
    let decision = match &outcome {
        state_machine::Outcome::Changed(t) if t.holds_for_review().is_some() => {
            CallbackOutcome::HeldForReview
        }
        state_machine::Outcome::Changed(_) => CallbackOutcome::Applied,
        state_machine::Outcome::Duplicate => CallbackOutcome::Duplicate,
        state_machine::Outcome::Unchanged(_) => CallbackOutcome::Ignored,
    };
    let mut update = build_update(plan, payment, outcome, now);
    if update.transition.is_none() {
        return CallbackDecision {
            outcome: decision,
            update: None,
            outbox: Vec::new(),
        };
    }
    update.event = Some(NewPaymentEvent {
        kind: "callback".into(),
        detail: json!({
            "callback_id": incoming.id,
            "result_code": report.result_code.as_str(),
            "result_desc": report.result_desc,
            "receipt": report.success.as_ref().map(|s| s.receipt.clone()),
            "review_reason": update.transition.as_ref().and_then(|t| t.holds_for_review()).map(|r| r.describe()),
        })
        .to_string(),
    });
    CallbackDecision {
        outcome: decision,
        update: Some(update),
        outbox: Vec::new(),
    }
}

/// Decides for a callback already stored (re-matched later): parses its body again.
pub fn decide_stored_stk(
    plan: &NotificationPlan,
    incoming: &IncomingCallback,
    payment: Option<&Payment>,
    now: i64,
) -> CallbackDecision {
    let parsed = parse_stk(&incoming.body);
    decide_stk(plan, incoming, parsed.report.as_ref().ok(), payment, now)
}

/// Reports parsed before a batch goes to storage, by callback id.
pub type Reports = HashMap<String, CallbackReport>;

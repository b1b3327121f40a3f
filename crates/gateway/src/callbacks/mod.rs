//! Callbacks from Safaricom: parsing, the decision each one leads to, and durable ingestion with
//! group commit.

pub mod ingest;
mod redrive;

pub use ingest::{CallbackIngestor, IngestError};

use std::collections::HashMap;

use daraja::{C2bPayment, StkCallback};
use mpesa_domain::c2b::{C2bPath, C2bReport};
use mpesa_domain::{CallbackReport, decision, state_machine};
use mpesa_storage::{CallbackDecision, CallbackKind, CallbackOutcome, IncomingCallback, Payment};

use crate::payments::c2b::{PreparedC2b, decide_c2b};
use crate::payments::service::{build_update, update_for};
use crate::payments::{NotificationPlan, Payments};

/// An STK callback body, parsed as far as it goes.
pub struct ParsedStk {
    pub checkout_request_id: Option<String>,
    pub merchant_request_id: Option<String>,
    pub report: Result<CallbackReport, String>,
}

/// Parses an STK callback body. When the strict parse fails, the CheckoutRequestID is still
/// looked for, so the stored body can be linked to its payment.
pub fn parse_stk(body: &[u8]) -> ParsedStk {
    match StkCallback::parse_with_report(body) {
        Ok((cb, report)) => ParsedStk {
            checkout_request_id: Some(cb.checkout_request_id().to_owned())
                .filter(|s| !s.is_empty()),
            merchant_request_id: Some(cb.merchant_request_id().to_owned())
                .filter(|s| !s.is_empty()),
            report: Ok(report),
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

/// What was made of a callback before it goes to storage.
#[derive(Debug, Clone)]
pub enum Prepared {
    Stk(CallbackReport),
    C2b(Box<PreparedC2b>),
}

/// The decision for any callback, given what was prepared from it and the payment it names
/// (an STK callback's, locked; a C2B confirmation's: the one that holds its receipt).
pub fn decide(
    plan: &NotificationPlan,
    incoming: &IncomingCallback,
    prepared: Option<&Prepared>,
    payment: Option<&Payment>,
    now: i64,
) -> CallbackDecision {
    match (incoming.kind, prepared) {
        (CallbackKind::Stk, Some(Prepared::Stk(report))) => {
            decide_stk(plan, incoming, Some(report), payment, now)
        }
        (CallbackKind::Stk, _) => decide_stk(plan, incoming, None, payment, now),
        (CallbackKind::C2bConfirmation, Some(Prepared::C2b(c2b))) => {
            decide_c2b(plan, c2b, payment, &incoming.id, now)
        }
        (CallbackKind::C2bConfirmation, _) if incoming.parse_error.is_some() => {
            CallbackDecision::only(CallbackOutcome::Unparseable)
        }
        // Readable, but its lookups failed: stored raw for the re-drive to prepare and book.
        (CallbackKind::C2bConfirmation, None) => CallbackDecision::only(CallbackOutcome::Received),
        // Validations and initiator results are kept for audit and the dashboard.
        _ => CallbackDecision::only(CallbackOutcome::Stored),
    }
}

/// The decision for a success whose receipt number another payment holds (the batch could not
/// apply it: the unique rule refused it): the payment is held for a person to review.
pub fn decide_receipt_in_use(
    plan: &NotificationPlan,
    payment: &Payment,
    now: i64,
) -> CallbackDecision {
    let update = build_update(
        plan,
        payment,
        state_machine::on_receipt_in_use(&payment.snapshot()),
        now,
    );
    CallbackDecision {
        outcome: CallbackOutcome::HeldForReview,
        update: Some(update),
        outbox: Vec::new(),
        book: None,
    }
}

/// The decision for an STK callback, given the payment it names (locked by storage): the
/// domain's ([`decision::on_stk_callback`]), with its timeline entry and notifications.
pub fn decide_stk(
    plan: &NotificationPlan,
    incoming: &IncomingCallback,
    report: Option<&CallbackReport>,
    payment: Option<&Payment>,
    now: i64,
) -> CallbackDecision {
    if incoming.kind != CallbackKind::Stk {
        return CallbackDecision::only(CallbackOutcome::Stored);
    }
    let decided = decision::on_stk_callback(report, payment.map(Payment::snapshot).as_ref());
    let outcome = CallbackOutcome::from(decided.class);
    let (Some(change), Some(report), Some(payment)) = (decided.change, report, payment) else {
        return CallbackDecision::only(outcome);
    };
    let review_reason = change.transition.holds_for_review().map(|r| r.describe());
    let mut update = update_for(plan, payment, change, now);
    update.event = Some(
        serde_json::to_string(&CallbackEventDetail {
            callback_id: &incoming.id,
            receipt: report.success.as_ref().map(|s| s.receipt.as_str()),
            result_code: report.result_code.as_str(),
            result_desc: &report.result_desc,
            review_reason: review_reason.as_deref(),
        })
        .expect("text fields always serialize"),
    );
    CallbackDecision {
        outcome,
        update: Some(update),
        outbox: Vec::new(),
        book: None,
    }
}

/// The timeline detail of a payment change a callback made (written straight, without a JSON
/// tree: one is made per callback).
#[derive(serde::Serialize)]
struct CallbackEventDetail<'a> {
    // In the order `json!` wrote them (its objects sort their keys).
    callback_id: &'a str,
    receipt: Option<&'a str>,
    result_code: &'a str,
    result_desc: &'a str,
    review_reason: Option<&'a str>,
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

/// What was prepared from each callback of a batch, by callback id.
pub type Reports = HashMap<String, Prepared>;

/// The longest TransID a confirmation may carry (what storage keeps as a payment's receipt).
const MAX_TRANS_ID_CHARS: usize = 64;

/// Parses a C2B confirmation body: the receipt it names (kept on the stored callback, so that
/// it can be applied again later) and the report, or why it cannot be read.
pub fn parse_c2b(body: &[u8]) -> (Option<String>, Result<C2bReport, String>) {
    match C2bPayment::parse(body) {
        Ok(p) => {
            let receipt =
                Some(p.trans_id.trim().to_owned()).filter(|r| !r.is_empty() && !r.contains('\0'));
            match p.to_report() {
                // A receipt is 10 characters; one longer than a stored id could not name its
                // payment, and the confirmation would be taken as applied with nothing booked.
                Some(r) if r.receipt.trim().chars().count() > MAX_TRANS_ID_CHARS => (
                    None,
                    Err(format!(
                        "TransID is longer than {MAX_TRANS_ID_CHARS} characters"
                    )),
                ),
                // No M-Pesa field holds one, and PostgreSQL cannot store one in text: looked up or
                // booked, it would fail every time, and the confirmation would be lost.
                Some(r) if r.holds_a_nul() => (
                    receipt,
                    Err("a text field holds a NUL character".to_owned()),
                ),
                Some(r) => (receipt, Ok(r)),
                None => (
                    receipt,
                    Err("TransAmount is not an exact amount".to_owned()),
                ),
            }
        }
        Err(e) => (None, Err(e.to_string())),
    }
}

/// Prepares a C2B confirmation (parsing its body again when it was stored earlier): `None`
/// when it cannot be read.
pub async fn prepare_confirmation(
    payments: &Payments,
    body: &[u8],
) -> Result<Option<PreparedC2b>, mpesa_storage::StorageError> {
    match parse_c2b(body).1 {
        Ok(report) => Ok(Some(
            payments.prepare_c2b(report, C2bPath::Confirmation).await?,
        )),
        Err(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The timeline detail is written without a JSON tree now; rows written before must read
    /// the same as rows written after, key for key and byte for byte.
    #[test]
    fn a_callbacks_timeline_detail_is_the_text_it_always_was() {
        for (receipt, review_reason) in [
            (Some("TK8QWERTY1"), None),
            (None, Some("amount 5 is not the 10 asked \"for\"")),
        ] {
            let detail = CallbackEventDetail {
                callback_id: "cb_01",
                receipt,
                result_code: "0",
                result_desc: "The service request is processed successfully.",
                review_reason,
            };
            let before = serde_json::json!({
                "callback_id": "cb_01",
                "result_code": "0",
                "result_desc": "The service request is processed successfully.",
                "receipt": receipt,
                "review_reason": review_reason,
            })
            .to_string();
            assert_eq!(serde_json::to_string(&detail).unwrap(), before);
        }
    }
}

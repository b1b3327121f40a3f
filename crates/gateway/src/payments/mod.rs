//! Payments from request to settlement: creating them, sending the push, applying what Daraja
//! answers, asking Daraja when no answer comes (the reconciler), and planning who is told.
//!
//! The rules themselves live in `mpesa_domain::state_machine`; this module feeds them events
//! and has storage write their answers atomically.

pub mod c2b;
pub mod idempotency;
pub mod links;
pub mod notify;
pub mod reconciler;
pub mod service;
pub mod start;
pub mod view;

pub use idempotency::{Idempotency, IdempotencyKey, TELEGRAM_IDEMPOTENCY_SCOPE};
pub use links::PaymentLinks;
pub use notify::NotificationPlan;
pub use service::{AdminDecision, PaymentError, Payments, PushOutcome};
pub use start::{
    NewPaymentRequest, Origin, PushWhen, StartPayment, StartRefused, Started, start_answer,
};
pub use view::PaymentView;

use mpesa_domain::{ReviewChange, Transition};
use mpesa_storage::Payment;

/// The payment as it will be once `t` is written at `now`: the same rules storage applies,
/// used to build notification payloads inside the writing transaction.
pub fn after_transition(p: &Payment, t: &Transition, now: i64) -> Payment {
    let mut n = p.clone();
    n.status = t.status;
    if let Some(v) = &t.checkout_request_id {
        n.checkout_request_id = Some(v.clone());
    }
    if let Some(v) = &t.merchant_request_id {
        n.merchant_request_id = Some(v.clone());
    }
    if let Some(v) = &t.result_code {
        n.result_code = Some(v.as_str().to_owned());
    }
    if let Some(v) = &t.result_desc {
        n.result_desc = Some(v.clone());
    }
    if let Some(v) = &t.mpesa_receipt_number {
        n.mpesa_receipt_number = Some(v.clone());
    }
    if let Some(v) = t.transaction_date_ms {
        n.transaction_date = Some(v);
    }
    match &t.review {
        ReviewChange::Keep => {}
        ReviewChange::Hold(reason) => {
            n.needs_review = true;
            n.review_reason = Some(reason.describe());
        }
        ReviewChange::Clear => {
            n.needs_review = false;
            n.review_reason = None;
        }
    }
    if n.finalized_at.is_none() && t.status.is_final() {
        n.finalized_at = Some(now);
    }
    n.updated_at = now;
    n.version += 1;
    n
}

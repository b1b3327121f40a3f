//! Payments from request to settlement: creating them, sending the push, applying what Daraja
//! answers, asking Daraja when no answer comes (the reconciler), and planning who is told.
//!
//! The rules themselves live in `mpesa_domain::state_machine`; this module feeds them events
//! and has storage write their answers atomically.

pub mod c2b;
pub mod idempotency;
pub mod links;
pub mod notify;
pub mod reads;
pub mod reconciler;
pub mod schedule;
pub mod service;
pub mod start;
pub mod status_messages;
pub mod view;

pub use idempotency::{Idempotency, IdempotencyKey, TELEGRAM_IDEMPOTENCY_SCOPE};
pub use links::PaymentLinks;
pub use notify::NotificationPlan;
pub use reads::{PaymentReads, PaymentRecord};
pub use service::{AdminDecision, PaymentError, Payments, PushOutcome};
pub use start::{
    NewPaymentRequest, Origin, PushWhen, StartPayment, StartRefused, Started, start_answer,
};
pub use status_messages::StatusMessages;
pub use view::PaymentView;

use mpesa_domain::Transition;
use mpesa_storage::Payment;

/// The payment as it will be once `t` is written at `now` (`Transition::apply`, as storage
/// writes it), used to build notification payloads inside the writing transaction.
pub fn after_transition(p: &Payment, t: &Transition, now: i64) -> Payment {
    let mut n = p.clone();
    t.apply(n.fields_mut(), now);
    n.updated_at = now;
    n.version += 1;
    n
}

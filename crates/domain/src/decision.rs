//! What a state-machine outcome means for the write that records it: the transition, whether
//! the reconciler stops looking at the payment, whether the completion goes through a payment
//! link; and, for an STK callback, which outcome it is. Storage and the gateway translate these
//! into their rows (storage's `PaymentUpdate`, the notification plan's outbox rows); the
//! decision itself is made here, once.

use crate::payment::PaymentStatus;
use crate::state_machine::{self, CallbackReport, Outcome, PaymentSnapshot, Transition};

/// A change the rules decided for a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentChange {
    pub transition: Transition,
    /// The payment is final after it: the reconciler never looks at it again. Otherwise its next
    /// check is left as it is.
    pub clears_schedule: bool,
    /// It completes a payment made through a payment link: storage settles the link, and holds
    /// this payment instead when another payment had already paid a single-use link (what
    /// people hear is then planned for that case too).
    pub completes_through_link: bool,
}

/// The change an outcome makes to the payment `p`, if it makes one.
pub fn change(p: &PaymentSnapshot, outcome: Outcome) -> Option<PaymentChange> {
    match outcome {
        Outcome::Changed(transition) => Some(changed(p, transition)),
        Outcome::Duplicate | Outcome::Unchanged(_) => None,
    }
}

/// The change `transition` makes to the payment `p` (a C2B booking's `p` is the payment as it
/// is before its completing transition).
pub fn changed(p: &PaymentSnapshot, transition: Transition) -> PaymentChange {
    PaymentChange {
        clears_schedule: transition.status.is_final(),
        completes_through_link: transition.status == PaymentStatus::Completed
            && p.status != PaymentStatus::Completed
            && p.through_link,
        transition,
    }
}

/// What became of an STK callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallbackClass {
    /// It changed the payment.
    Applied,
    /// It put the payment on hold for review.
    HeldForReview,
    /// It repeated what was already recorded.
    Duplicate,
    /// It was valid but changed nothing (e.g. a failure for a payment already failed, or a
    /// report about a payment a person is deciding on).
    Ignored,
    /// Its body could not be read.
    Unparseable,
    /// Its CheckoutRequestID names no payment (yet).
    Unmatched,
}

/// The decision for an STK callback: its class, and the change it makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StkCallbackDecision {
    pub class: CallbackClass,
    pub change: Option<PaymentChange>,
}

/// The decision for an STK callback given its report (`None`: its body could not be read) and
/// the payment its CheckoutRequestID names (`None`: no payment has it).
pub fn on_stk_callback(
    report: Option<&CallbackReport>,
    payment: Option<&PaymentSnapshot>,
) -> StkCallbackDecision {
    let only = |class| StkCallbackDecision {
        class,
        change: None,
    };
    let Some(report) = report else {
        return only(CallbackClass::Unparseable);
    };
    let Some(payment) = payment else {
        return only(CallbackClass::Unmatched);
    };
    let outcome = state_machine::on_callback(payment, report);
    let class = match &outcome {
        Outcome::Changed(t) if t.holds_for_review().is_some() => CallbackClass::HeldForReview,
        Outcome::Changed(_) => CallbackClass::Applied,
        Outcome::Duplicate => CallbackClass::Duplicate,
        Outcome::Unchanged(_) => CallbackClass::Ignored,
    };
    StkCallbackDecision {
        class,
        change: change(payment, outcome),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payment::{FinalOutcome, ReviewReason};
    use crate::state_machine::tests::{failure, snapshot as payment, success};
    use crate::state_machine::{ReviewChange, TransitionKind};

    const PHONE: &str = "254708374149";
    /// The receipt of a completed `payment`.
    const RECEIPT: &str = "SGA1XYZ123";

    #[test]
    fn a_matching_success_is_applied_final_and_unscheduled() {
        let d = on_stk_callback(
            Some(&success(10_000, PHONE, "R1")),
            Some(&payment(PaymentStatus::Pending)),
        );
        assert_eq!(d.class, CallbackClass::Applied);
        let c = d.change.expect("a change");
        assert_eq!(c.transition.kind, TransitionKind::Callback);
        assert_eq!(c.transition.status, PaymentStatus::Completed);
        assert_eq!(c.transition.notify, Some(FinalOutcome::Completed));
        assert!(c.clears_schedule, "final: the reconciler stops");
        assert!(!c.completes_through_link, "not made through a link");
    }

    #[test]
    fn a_success_completing_a_link_payment_goes_through_the_link() {
        let mut p = payment(PaymentStatus::Pending);
        p.through_link = true;
        let c = on_stk_callback(Some(&success(10_000, PHONE, "R1")), Some(&p))
            .change
            .unwrap();
        assert!(c.completes_through_link);
        // A failure through a link settles nothing.
        let c = on_stk_callback(Some(&failure("1032")), Some(&p))
            .change
            .unwrap();
        assert_eq!(c.transition.status, PaymentStatus::Cancelled);
        assert!(c.clears_schedule);
        assert!(!c.completes_through_link);
    }

    #[test]
    fn a_receipt_added_to_a_completed_link_payment_does_not_settle_the_link_again() {
        // Completed by an STK Query (no receipt): the later callback adds the receipt.
        let mut p = payment(PaymentStatus::Completed);
        p.mpesa_receipt_number = None;
        p.through_link = true;
        let d = on_stk_callback(Some(&success(10_000, PHONE, "R1")), Some(&p));
        assert_eq!(d.class, CallbackClass::Applied);
        let c = d.change.unwrap();
        assert_eq!(c.transition.mpesa_receipt_number.as_deref(), Some("R1"));
        assert!(!c.completes_through_link, "it was completed already");
    }

    #[test]
    fn a_mismatching_success_is_held_and_an_open_payment_stays_scheduled() {
        let d = on_stk_callback(
            Some(&success(5_000, PHONE, "R1")),
            Some(&payment(PaymentStatus::Pending)),
        );
        assert_eq!(d.class, CallbackClass::HeldForReview);
        let c = d.change.unwrap();
        assert_eq!(c.transition.status, PaymentStatus::Pending);
        assert!(matches!(
            c.transition.review,
            ReviewChange::Hold(ReviewReason::AmountMismatch { .. })
        ));
        assert!(
            !c.clears_schedule,
            "still open: the reconciler keeps asking"
        );
        assert!(!c.completes_through_link);
    }

    #[test]
    fn a_contradiction_of_a_final_payment_is_held_and_stays_unscheduled() {
        let d = on_stk_callback(
            Some(&failure("1032")),
            Some(&payment(PaymentStatus::Completed)),
        );
        assert_eq!(d.class, CallbackClass::HeldForReview);
        let c = d.change.unwrap();
        assert_eq!(c.transition.status, PaymentStatus::Completed);
        assert!(c.clears_schedule);
        assert!(!c.completes_through_link);
    }

    #[test]
    fn a_repeat_is_a_duplicate_and_changes_nothing() {
        let repeats = [
            (success(10_000, PHONE, RECEIPT), PaymentStatus::Completed),
            (failure("1032"), PaymentStatus::Cancelled),
        ];
        for (report, status) in repeats {
            assert_eq!(
                on_stk_callback(Some(&report), Some(&payment(status))),
                StkCallbackDecision {
                    class: CallbackClass::Duplicate,
                    change: None
                },
                "{status}"
            );
        }
    }

    #[test]
    fn a_callback_that_changes_nothing_is_ignored() {
        let mut held = payment(PaymentStatus::Pending);
        held.needs_review = true;
        // A person decides on a held payment; another failure for one that ended unpaid.
        let ignored = [
            (success(10_000, PHONE, "R1"), held),
            (failure("1"), payment(PaymentStatus::Cancelled)),
        ];
        for (report, p) in ignored {
            assert_eq!(
                on_stk_callback(Some(&report), Some(&p)),
                StkCallbackDecision {
                    class: CallbackClass::Ignored,
                    change: None
                },
                "{:?}",
                p.status
            );
        }
    }

    #[test]
    fn an_unreadable_or_unmatched_callback_changes_nothing() {
        let p = payment(PaymentStatus::Pending);
        assert_eq!(
            on_stk_callback(None, Some(&p)),
            StkCallbackDecision {
                class: CallbackClass::Unparseable,
                change: None
            }
        );
        assert_eq!(
            on_stk_callback(Some(&success(10_000, PHONE, "R1")), None),
            StkCallbackDecision {
                class: CallbackClass::Unmatched,
                change: None
            }
        );
    }

    #[test]
    fn an_outcome_without_a_transition_makes_no_change() {
        let p = payment(PaymentStatus::Pending);
        assert_eq!(change(&p, Outcome::Duplicate), None);
        assert_eq!(change(&p, Outcome::Unchanged("still processing")), None);
        let mut t = Transition::new(TransitionKind::Query, PaymentStatus::Pending);
        t.result_desc = Some("x".into());
        let c = change(&p, Outcome::Changed(t.clone())).unwrap();
        assert_eq!(c.transition, t);
        assert!(!c.clears_schedule);
    }
}

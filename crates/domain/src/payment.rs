//! Payment states.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a payment is. `Initiated` and `Pending` are the only states that move on their own;
/// the rest are final and change only by an explicit, recorded decision of an admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Stored, and the push is being sent (or its outcome is unknown).
    Initiated,
    /// Daraja accepted the push: the prompt is on the phone.
    Pending,
    Completed,
    /// Declined: insufficient funds, wrong PIN, limits…
    Failed,
    /// The customer cancelled the prompt (1032).
    Cancelled,
    /// The phone did not answer (1037/1019) or no final answer came in time.
    TimedOut,
    /// Daraja refused the push request itself.
    Rejected,
}

pub const ALL_STATUSES: [PaymentStatus; 7] = [
    PaymentStatus::Initiated,
    PaymentStatus::Pending,
    PaymentStatus::Completed,
    PaymentStatus::Failed,
    PaymentStatus::Cancelled,
    PaymentStatus::TimedOut,
    PaymentStatus::Rejected,
];

impl PaymentStatus {
    pub fn is_final(self) -> bool {
        !matches!(self, PaymentStatus::Initiated | PaymentStatus::Pending)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Initiated => "initiated",
            PaymentStatus::Pending => "pending",
            PaymentStatus::Completed => "completed",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Cancelled => "cancelled",
            PaymentStatus::TimedOut => "timed_out",
            PaymentStatus::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        ALL_STATUSES.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The final outcomes that people are told about (`payment.<outcome>` events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalOutcome {
    Completed,
    Failed,
    Cancelled,
    TimedOut,
}

impl FinalOutcome {
    pub fn status(self) -> PaymentStatus {
        match self {
            FinalOutcome::Completed => PaymentStatus::Completed,
            FinalOutcome::Failed => PaymentStatus::Failed,
            FinalOutcome::Cancelled => PaymentStatus::Cancelled,
            FinalOutcome::TimedOut => PaymentStatus::TimedOut,
        }
    }

    /// The webhook event type, e.g. `payment.completed`.
    pub fn event_type(self) -> &'static str {
        match self {
            FinalOutcome::Completed => "payment.completed",
            FinalOutcome::Failed => "payment.failed",
            FinalOutcome::Cancelled => "payment.cancelled",
            FinalOutcome::TimedOut => "payment.timed_out",
        }
    }

    pub fn from_status(status: PaymentStatus) -> Option<Self> {
        match status {
            PaymentStatus::Completed => Some(FinalOutcome::Completed),
            PaymentStatus::Failed => Some(FinalOutcome::Failed),
            PaymentStatus::Cancelled => Some(FinalOutcome::Cancelled),
            PaymentStatus::TimedOut => Some(FinalOutcome::TimedOut),
            _ => None,
        }
    }
}

/// Why a payment is held for a person to look at instead of being settled automatically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReviewReason {
    /// A success reported for another amount than the one we asked for.
    AmountMismatch {
        expected_cents: i64,
        reported_cents: i64,
    },
    /// A success that does not say how much was paid.
    AmountMissing,
    /// A success paid from another phone than the one we pushed to.
    PhoneMismatch,
    /// A callback that contradicts a final state the payment already has.
    ContradictsFinalState {
        current: PaymentStatus,
        reported: FinalOutcome,
    },
    /// A second success for the same payment with another receipt number.
    ReceiptMismatch,
    /// A success reported after the payment was given up as timed out or failed.
    LateSuccess { previous: PaymentStatus },
    /// A success whose receipt number already belongs to another payment.
    ReceiptInUse,
    /// The push's answer was lost; a callback with this phone and amount, confirmed by STK
    /// Query, was tied to the payment. The match is by phone and amount only: a person settles.
    MatchedAfterUnknownPush,
    /// Daraja answered none of the STK Queries until its records ran out: M-Pesa may have taken
    /// the money.
    NoAnswerFromDaraja { asked_for_hours: i64 },
    /// Daraja answered every STK Query, but never with an outcome ("still under processing",
    /// or a code we do not know) until its records ran out: M-Pesa may have taken the money.
    NeverFinal { asked_for_hours: i64 },
    /// The push's answer never came and no callback named the payment by its expiry: M-Pesa may
    /// have taken the money.
    PushOutcomeUnknown,
    /// A completion through a single-use link that another payment (`paid_by`) had already
    /// paid: the customer paid twice.
    LinkAlreadyPaid { link_id: String, paid_by: String },
}

impl ReviewReason {
    /// One line for people: the API's `review_reason`, logs and alerts.
    pub fn describe(&self) -> String {
        match self {
            ReviewReason::AmountMismatch {
                expected_cents,
                reported_cents,
            } => format!(
                "callback reports {} but {} was requested",
                crate::money::Cents(*reported_cents),
                crate::money::Cents(*expected_cents)
            ),
            ReviewReason::AmountMissing => "success callback carries no amount".into(),
            ReviewReason::PhoneMismatch => "success callback is from another phone number".into(),
            ReviewReason::ContradictsFinalState { current, reported } => format!(
                "callback reports {} but the payment is already {}",
                reported.status(),
                current
            ),
            ReviewReason::ReceiptMismatch => {
                "second success callback with another receipt number".into()
            }
            ReviewReason::LateSuccess { previous } => {
                format!("success reported after the payment was {previous}")
            }
            ReviewReason::MatchedAfterUnknownPush => {
                "Daraja's answer to the push was lost; matched to its callback by phone and amount, confirmed by STK Query".into()
            }
            ReviewReason::NoAnswerFromDaraja { asked_for_hours } => format!(
                "Daraja answered no STK Query for {asked_for_hours} hours: M-Pesa may have taken the money; check the statement"
            ),
            ReviewReason::NeverFinal { asked_for_hours } => format!(
                "Daraja's STK Query answers had no outcome (still under processing) for {asked_for_hours} hours: M-Pesa may have taken the money; check the statement"
            ),
            ReviewReason::PushOutcomeUnknown => {
                "Daraja's answer to the push never came and no callback named it: M-Pesa may have taken the money; check the statement".into()
            }
            ReviewReason::ReceiptInUse => {
                "success callback carries a receipt number that belongs to another payment".into()
            }
            ReviewReason::LinkAlreadyPaid { link_id, paid_by } => format!(
                "paid through single-use link {link_id}, which {paid_by} had already paid: refund suggested"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_round_trip() {
        for st in ALL_STATUSES {
            assert_eq!(PaymentStatus::parse(st.as_str()), Some(st));
            assert_eq!(serde_json_like(st), st.as_str());
        }
        assert_eq!(PaymentStatus::parse("paid"), None);
    }

    fn serde_json_like(st: PaymentStatus) -> String {
        // Display and the wire name agree.
        st.to_string()
    }

    #[test]
    fn only_initiated_and_pending_move() {
        let moving: Vec<_> = ALL_STATUSES.into_iter().filter(|s| !s.is_final()).collect();
        assert_eq!(
            moving,
            vec![PaymentStatus::Initiated, PaymentStatus::Pending]
        );
    }
}

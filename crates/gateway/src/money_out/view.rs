//! Refunds, payouts and balances as the merchant API, webhooks and the dashboard show them.

use mpesa_storage::{InitiatorRequest, MoneyOutEvent, Payout, Refund};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::ids::rfc3339;

/// A refund: the M-Pesa Reversal of a whole payment. `status`: `pending`, `completed`, `failed`
/// (with Daraja's `result_code`, e.g. `R000001` already reversed).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RefundView {
    #[schema(example = "rfd_0192f3a4b5c67d8e9f00112233445566")]
    pub id: String,
    pub payment_id: String,
    #[schema(example = "pending")]
    pub status: String,
    pub reason: String,
    /// Whole shillings (the whole payment).
    pub amount: i64,
    /// The receipt of the payment reversed.
    pub payment_receipt: String,
    /// The reversal's own receipt, when Daraja gave it.
    pub reversal_receipt: Option<String>,
    pub result_code: Option<String>,
    pub result_desc: Option<String>,
    /// Who asked: `admin:<name>` or `api:<key name>`.
    pub requested_by: String,
    /// True when nobody knows whether the reversal went through: Safaricom never answered, and
    /// Transaction Status was asked until `INITIATOR_KEEP_ASKING_SECS` without a final answer.
    /// The refund stays `pending` until a person records its outcome on the dashboard; it is
    /// never sent again. Also true when M-Pesa's late answer contradicts what a person recorded.
    pub needs_review: bool,
    pub created_at: String,
    pub updated_at: String,
    pub completed_at: Option<String>,
}

impl From<&Refund> for RefundView {
    fn from(r: &Refund) -> Self {
        RefundView::new(r, None)
    }
}

impl RefundView {
    /// With its Reversal request, when it is known (whether it is held for a person).
    pub fn new(r: &Refund, request: Option<&InitiatorRequest>) -> Self {
        RefundView {
            id: r.id.clone(),
            payment_id: r.payment_id.clone(),
            status: r.status.as_str().to_owned(),
            reason: r.reason.clone(),
            amount: r.amount,
            payment_receipt: r.payment_receipt.clone(),
            reversal_receipt: r.reversal_receipt.clone(),
            result_code: r.result_code.clone(),
            result_desc: r.result_desc.clone(),
            requested_by: r.requested_by.clone(),
            needs_review: request.is_some_and(|q| q.needs_review),
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
            completed_at: r.finalized_at.map(rfc3339),
        }
    }
}

/// A payout (B2C). `status`: `awaiting_approval`, `pending`, `completed`, `failed`, `rejected`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PayoutView {
    #[schema(example = "po_0192f3a4b5c67d8e9f00112233445566")]
    pub id: String,
    #[schema(example = "pending")]
    pub status: String,
    #[schema(example = "254708374149")]
    pub phone: String,
    pub amount: i64,
    /// `business`, `salary` or `promotion`.
    pub purpose: String,
    pub remarks: String,
    pub occasion: Option<String>,
    pub requested_by: String,
    /// The admin who approved or rejected it.
    pub decided_by: Option<String>,
    pub decision_note: Option<String>,
    /// The M-Pesa receipt of a completed payout.
    pub receipt: Option<String>,
    /// The recipient's registered name as Safaricom gives it (`2547… - JANE DOE`).
    pub recipient_name: Option<String>,
    /// The B2C utility account's balance after the payout, in cents.
    pub utility_balance_cents: Option<i64>,
    pub result_code: Option<String>,
    pub result_desc: Option<String>,
    /// The state of its Daraja request: `sending`, `accepted`, `unknown` (being found out by
    /// Transaction Status), `completed`, `failed`.
    pub request_status: Option<String>,
    /// True when nobody knows whether the money went: Safaricom never answered, and Transaction
    /// Status was asked until `INITIATOR_KEEP_ASKING_SECS` without a final answer. The payout
    /// stays `pending` until a person checks the M-Pesa portal and records its outcome on the
    /// dashboard; it is never sent again. Also true when M-Pesa's late answer contradicts what a
    /// person recorded.
    pub needs_review: bool,
    pub created_at: String,
    pub updated_at: String,
    pub completed_at: Option<String>,
}

impl PayoutView {
    pub fn new(p: &Payout, request: Option<&InitiatorRequest>) -> Self {
        PayoutView {
            id: p.id.clone(),
            status: p.status.as_str().to_owned(),
            phone: p.phone.clone(),
            amount: p.amount,
            purpose: crate::money_out::PayoutPurpose::from_command(&p.command)
                .as_str()
                .to_owned(),
            remarks: p.remarks.clone(),
            occasion: p.occasion.clone(),
            requested_by: p.requested_by.clone(),
            decided_by: p.decided_by.clone(),
            decision_note: p.decision_note.clone(),
            receipt: p.receipt.clone(),
            recipient_name: p.recipient_name.clone(),
            utility_balance_cents: p.utility_balance_cents,
            result_code: p.result_code.clone(),
            result_desc: p.result_desc.clone(),
            request_status: request.map(|r| r.status.as_str().to_owned()),
            needs_review: request.is_some_and(|r| r.needs_review),
            created_at: rfc3339(p.created_at),
            updated_at: rfc3339(p.updated_at),
            completed_at: p.finalized_at.map(rfc3339),
        }
    }
}

impl From<&Payout> for PayoutView {
    fn from(p: &Payout) -> Self {
        PayoutView::new(p, None)
    }
}

/// Why a payout or refund is held for a person, as its page shows it (and what a person may
/// do about it there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Not held.
    No,
    /// Not final: nobody knows its outcome; a person records it.
    Open,
    /// Final, and M-Pesa contradicted the outcome recorded by hand: a person acknowledges it.
    Contradicted,
    /// Final and held for another reason (the timeline says which): there is nothing to
    /// acknowledge.
    Final,
}

impl Hold {
    /// The hold of a payout's or refund's Daraja request.
    pub fn of(request: Option<&InitiatorRequest>) -> Hold {
        let Some(r) = request.filter(|r| r.needs_review) else {
            return Hold::No;
        };
        if !r.status.is_final() {
            return Hold::Open;
        }
        // The rule "Acknowledge" runs decides whether the page offers it.
        if mpesa_domain::initiator::may_acknowledge(&r.snapshot()) {
            Hold::Contradicted
        } else {
            Hold::Final
        }
    }
}

/// One entry of a timeline.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EventView {
    pub at: String,
    pub kind: String,
    #[schema(value_type = Object)]
    pub detail: Value,
}

impl From<&MoneyOutEvent> for EventView {
    fn from(e: &MoneyOutEvent) -> Self {
        EventView {
            at: rfc3339(e.occurred_at),
            kind: e.kind.clone(),
            detail: serde_json::from_str(&e.detail).unwrap_or(Value::Null),
        }
    }
}

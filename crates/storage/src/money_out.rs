//! Records of money going out: initiator requests (B2C, Reversal, Transaction Status, Account
//! Balance), refunds and payouts, and their timelines.

use mpesa_domain::{RequestKind, RequestSnapshot, RequestStatus, RequestTransition, ResultCode};
use serde::Serialize;

use crate::Millis;
use crate::model::{CallbackOutcome, IdempotencyClaim, NewOutboxEvent, StoredResponse};

// ---- initiator requests -------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub struct NewInitiatorRequest {
    /// `ireq_…`.
    pub id: String,
    pub kind: RequestKind,
    /// Who asked, and is told of the result: `refund`, `payout`, `resolve`, `balance`,
    /// `receipt_check`…
    pub purpose: String,
    /// The owner's record (`rfd_…`, `po_…`, the request being resolved, a receipt…).
    pub owner_id: Option<String>,
    /// Ours when the API takes one (B2C v3); otherwise Daraja's, recorded on acceptance.
    pub originator_conversation_id: Option<String>,
    /// What was asked, as JSON text (never a credential).
    pub params: String,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InitiatorRequest {
    pub id: String,
    pub kind: RequestKind,
    pub purpose: String,
    pub owner_id: Option<String>,
    pub originator_conversation_id: Option<String>,
    pub conversation_id: Option<String>,
    pub status: RequestStatus,
    pub params: String,
    pub result_code: Option<String>,
    pub result_desc: Option<String>,
    pub receipt: Option<String>,
    /// The result's details as JSON text (what the typed `Result` body parsed to).
    pub result: Option<String>,
    pub needs_review: bool,
    /// Transaction Status questions asked about it so far.
    pub attempts: i32,
    pub next_check_at: Option<Millis>,
    /// When its owner was told of its final state (`None`: not yet).
    pub owner_notified_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub finalized_at: Option<Millis>,
    pub version: i64,
}

impl InitiatorRequest {
    /// Whether a person recorded its outcome (its result details say so).
    pub fn settled_by_hand(&self) -> bool {
        self.has_detail(mpesa_domain::initiator::SETTLED_BY_HAND)
    }

    /// Whether a person acknowledged that Daraja contradicts the outcome recorded by hand.
    pub fn acknowledged(&self) -> bool {
        self.has_detail(mpesa_domain::initiator::ACKNOWLEDGED)
    }

    /// The answer a person acknowledged (`None` for an acknowledgement recorded before the
    /// answer was kept with it).
    pub fn acknowledged_contradiction(&self) -> Option<mpesa_domain::initiator::Contradiction> {
        let details = self.details()?;
        let answer = details
            .get(mpesa_domain::initiator::ACKNOWLEDGED)?
            .get(mpesa_domain::initiator::CONTRADICTED)?;
        serde_json::from_value(answer.clone()).ok()
    }

    fn has_detail(&self, key: &str) -> bool {
        self.details().is_some_and(|d| d.get(key).is_some())
    }

    fn details(&self) -> Option<serde_json::Value> {
        self.result
            .as_deref()
            .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok())
    }

    pub fn snapshot(&self) -> RequestSnapshot {
        RequestSnapshot {
            kind: self.kind,
            status: self.status,
            conversation_id: self.conversation_id.clone(),
            result_code: self.result_code.as_deref().map(ResultCode::new),
            receipt: self.receipt.clone(),
            needs_review: self.needs_review,
            settled_by_hand: self.settled_by_hand(),
            acknowledged: self.acknowledged(),
            acknowledged_contradiction: self.acknowledged_contradiction(),
            created_at_ms: self.created_at,
        }
    }
}

/// A change to an initiator request, decided on its locked row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InitiatorUpdate {
    pub transition: Option<RequestTransition>,
    /// The result's details (JSON text), stored with a result.
    pub result: Option<String>,
    pub attempts: Option<i32>,
    /// `Some(None)` clears it.
    pub next_check_at: Option<Option<Millis>>,
    /// The timeline entry.
    pub event: Option<NewMoneyOutEvent>,
    /// Written with it (the admins' alert that Daraja contradicts a settlement by hand).
    pub outbox: Vec<NewOutboxEvent>,
    /// Set on an update that books Daraja's receipt: when a person already recorded that
    /// receipt by hand on another request, this update is not written, and what this returns
    /// (given the locked request and that other one) is written instead.
    pub if_receipt_held: Option<IfReceiptHeld>,
}

/// `(request, the other request) -> update`: see [`IfReceiptHeld`].
pub type ReceiptHeldFn =
    dyn Fn(&InitiatorRequest, &InitiatorRequest) -> InitiatorUpdate + Send + Sync;

/// What an update that books Daraja's receipt becomes when a person recorded that receipt by
/// hand on another request: `(request, the other request) -> update`. Storage looks, under the
/// lock that settlements by hand take turns on, so a settlement a moment ago is seen.
#[derive(Clone)]
pub struct IfReceiptHeld(pub std::sync::Arc<ReceiptHeldFn>);

impl std::fmt::Debug for IfReceiptHeld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IfReceiptHeld(..)")
    }
}

impl PartialEq for IfReceiptHeld {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Decides what an event changes, given the locked request. May run again on a conflict: pure.
pub type DecideInitiator<'a> =
    &'a (dyn Fn(&InitiatorRequest) -> Option<InitiatorUpdate> + Send + Sync);

/// Decides what a result or timeout callback does, given the request it names (locked), if any.
pub type DecideInitiatorCallback<'a> = &'a (
        dyn Fn(Option<&InitiatorRequest>) -> (CallbackOutcome, Option<InitiatorUpdate>)
            + Send
            + Sync
    );

/// Decides again for a stored callback (its body, kind and id) that named no request when it came.
pub type RedecideInitiatorCallback<'a> = &'a (
        dyn Fn(
    &crate::model::RawCallback,
    &InitiatorRequest,
) -> (CallbackOutcome, Option<InitiatorUpdate>)
            + Send
            + Sync
    );

/// How a stored result or timeout callback is matched to its request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InitiatorCallbackIds {
    pub originator_conversation_id: Option<String>,
    pub conversation_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestedInitiatorCallback {
    pub outcome: CallbackOutcome,
    /// The request as written (or as found, when nothing changed).
    pub request: Option<InitiatorRequest>,
    /// Whether this callback made the request final (its owner is to be told).
    pub became_final: bool,
}

// ---- timelines ----------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewMoneyOutEvent {
    pub kind: String,
    /// JSON object text.
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MoneyOutEvent {
    pub subject_id: String,
    pub occurred_at: Millis,
    pub kind: String,
    pub detail: String,
}

// ---- refunds -------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    Pending,
    Completed,
    Failed,
}

impl RefundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Pending => "pending",
            RefundStatus::Completed => "completed",
            RefundStatus::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Completed, Self::Failed]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRefund {
    /// `rfd_…`.
    pub id: String,
    pub payment_id: String,
    pub reason: String,
    /// `admin:<name>` or `api:<key name>`.
    pub requested_by: String,
    /// `api`, `dashboard`, `cli`.
    pub source: String,
    pub api_key_id: Option<String>,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refund {
    pub id: String,
    pub payment_id: String,
    pub status: RefundStatus,
    pub reason: String,
    pub amount: i64,
    pub payment_receipt: String,
    pub request_id: Option<String>,
    pub result_code: Option<String>,
    pub result_desc: Option<String>,
    pub reversal_receipt: Option<String>,
    pub requested_by: String,
    pub source: String,
    pub api_key_id: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub finalized_at: Option<Millis>,
    pub version: i64,
}

/// Why a refund is refused before anything is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundRefusal {
    PaymentNotFound,
    /// The payment is not `completed` (or has no receipt to reverse).
    NotRefundable(String),
    /// Another refund of this payment is pending or completed.
    AlreadyRefunded {
        refund_id: String,
        status: RefundStatus,
    },
}

/// Decides whether a payment may be refunded, given it (locked) and its refund under way or
/// done, if any. `Ok((amount, receipt))` stores the refund.
pub type DecideRefund<'a> = &'a (
        dyn Fn(&crate::model::Payment, Option<&Refund>) -> Result<(i64, String), RefundRefusal>
            + Send
            + Sync
    );

#[derive(Debug, Clone, PartialEq)]
pub enum CreateRefundResult {
    Created(Box<Refund>),
    Refused(RefundRefusal),
    Replay(StoredResponse),
    KeyReused,
    InProgress { id: String },
}

/// A change to a refund, with what goes with it in the same transaction.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RefundUpdate {
    pub status: Option<RefundStatus>,
    pub request_id: Option<String>,
    pub result_code: Option<String>,
    pub result_desc: Option<String>,
    pub reversal_receipt: Option<String>,
    /// On the refund's own timeline and on its payment's.
    pub event: Option<NewMoneyOutEvent>,
    pub outbox: Vec<NewOutboxEvent>,
}

pub type DecideRefundUpdate<'a> = &'a (dyn Fn(&Refund) -> Option<RefundUpdate> + Send + Sync);

// ---- payouts -------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PayoutStatus {
    AwaitingApproval,
    Pending,
    Completed,
    Failed,
    Rejected,
}

impl PayoutStatus {
    pub const ALL: [PayoutStatus; 5] = [
        PayoutStatus::AwaitingApproval,
        PayoutStatus::Pending,
        PayoutStatus::Completed,
        PayoutStatus::Failed,
        PayoutStatus::Rejected,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            PayoutStatus::AwaitingApproval => "awaiting_approval",
            PayoutStatus::Pending => "pending",
            PayoutStatus::Completed => "completed",
            PayoutStatus::Failed => "failed",
            PayoutStatus::Rejected => "rejected",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
    pub fn is_final(self) -> bool {
        matches!(
            self,
            PayoutStatus::Completed | PayoutStatus::Failed | PayoutStatus::Rejected
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPayout {
    /// `po_…`.
    pub id: String,
    pub status: PayoutStatus,
    pub phone: String,
    pub amount: i64,
    /// `BusinessPayment`, `SalaryPayment`, `PromotionPayment`.
    pub command: String,
    pub remarks: String,
    pub occasion: Option<String>,
    pub requested_by: String,
    pub source: String,
    pub api_key_id: Option<String>,
    /// Days since 1970-01-01 in East Africa Time.
    pub eat_day: i64,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Payout {
    pub id: String,
    pub status: PayoutStatus,
    pub phone: String,
    pub amount: i64,
    pub command: String,
    pub remarks: String,
    pub occasion: Option<String>,
    pub requested_by: String,
    pub source: String,
    pub api_key_id: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<Millis>,
    pub decision_note: Option<String>,
    pub request_id: Option<String>,
    pub receipt: Option<String>,
    pub recipient_name: Option<String>,
    pub utility_balance_cents: Option<i64>,
    pub result_code: Option<String>,
    pub result_desc: Option<String>,
    pub eat_day: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub finalized_at: Option<Millis>,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CreatePayoutResult {
    Created(Box<Payout>),
    /// The day's limit would be passed: `reserved` is what the day holds already.
    OverDailyLimit {
        reserved: i64,
        limit: i64,
    },
    Replay(StoredResponse),
    KeyReused,
    InProgress {
        id: String,
    },
}

/// A change to a payout, with what goes with it in the same transaction.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PayoutUpdate {
    pub status: Option<PayoutStatus>,
    pub decided_by: Option<String>,
    pub decision_note: Option<String>,
    pub request_id: Option<String>,
    pub receipt: Option<String>,
    pub recipient_name: Option<String>,
    pub utility_balance_cents: Option<i64>,
    pub result_code: Option<String>,
    pub result_desc: Option<String>,
    /// Gives the payout's amount back to its day's limit (it failed or was rejected).
    pub release_reservation: bool,
    pub event: Option<NewMoneyOutEvent>,
    pub outbox: Vec<NewOutboxEvent>,
}

pub type DecidePayoutUpdate<'a> = &'a (dyn Fn(&Payout) -> Option<PayoutUpdate> + Send + Sync);

/// The owner a request settled by hand takes with it, decided on its locked row given the
/// request as written. `None` refuses the whole settlement.
pub enum SettleOwner<'a> {
    Payout(&'a (dyn Fn(&InitiatorRequest, &Payout) -> Option<PayoutUpdate> + Send + Sync)),
    Refund(&'a (dyn Fn(&InitiatorRequest, &Refund) -> Option<RefundUpdate> + Send + Sync)),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PayoutFilter {
    pub status: Option<PayoutStatus>,
    pub phone: Option<String>,
}

/// The idempotency claim of a refund or payout: the same table as payments' (the key space is
/// the API key's), so one mechanism serves every POST that creates something.
pub type MoneyOutClaim = IdempotencyClaim;

// ---- receipt checks ------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptCheckStatus {
    /// Asked; Safaricom's answer has not come.
    Pending,
    /// Safaricom answered (found or not found: `finding` says which).
    Answered,
    /// No answer: the request was refused, or it expired in M-Pesa's queue.
    Failed,
}

impl ReceiptCheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptCheckStatus::Pending => "pending",
            ReceiptCheckStatus::Answered => "answered",
            ReceiptCheckStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Answered, Self::Failed]
            .into_iter()
            .find(|v| v.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        self != ReceiptCheckStatus::Pending
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReceiptCheck {
    /// `rchk_…`.
    pub id: String,
    /// The M-Pesa receipt asked about (upper case).
    pub code: String,
    /// `admin:<name>`, `api:<key name>`, `telegram:<chat>`.
    pub requested_by: String,
    /// `api`, `dashboard`, `telegram`.
    pub source: String,
    /// The Telegram chat that asked (`/paid`), told when the answer comes.
    pub telegram_chat: Option<i64>,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceiptCheck {
    pub id: String,
    pub code: String,
    pub status: ReceiptCheckStatus,
    /// The Transaction Status request (`ireq_…`).
    pub request_id: Option<String>,
    /// What Safaricom said: `completed`, `reversed`, `not_found`, `other`.
    pub finding: Option<String>,
    /// What the gateway did with it: `booked`, `already_booked`, `other_short_code`,
    /// `not_booked` (with why in `details`).
    pub outcome: Option<String>,
    pub result_code: Option<String>,
    pub result_desc: Option<String>,
    /// What the answer carried, as JSON text.
    pub details: Option<String>,
    pub payment_id: Option<String>,
    pub requested_by: String,
    pub source: String,
    pub telegram_chats: Vec<i64>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub finalized_at: Option<Millis>,
    pub version: i64,
}

impl ReceiptCheck {
    /// Final with no answer from Safaricom (none in time, or expired in its queue): the answer
    /// its request takes after all still counts.
    pub fn given_up(&self) -> bool {
        self.status == ReceiptCheckStatus::Failed && self.finding.is_none()
    }
}

/// A change to a receipt check, with what goes with it in the same transaction.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReceiptCheckUpdate {
    pub status: Option<ReceiptCheckStatus>,
    pub request_id: Option<String>,
    pub finding: Option<String>,
    pub outcome: Option<String>,
    pub result_code: Option<String>,
    pub result_desc: Option<String>,
    pub details: Option<String>,
    pub payment_id: Option<String>,
    /// Another chat that asked.
    pub add_telegram_chat: Option<i64>,
    /// On the check's timeline.
    pub event: Option<NewMoneyOutEvent>,
    pub outbox: Vec<NewOutboxEvent>,
}

pub type DecideReceiptCheck<'a> =
    &'a (dyn Fn(&ReceiptCheck) -> Option<ReceiptCheckUpdate> + Send + Sync);

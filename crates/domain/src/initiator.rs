//! The state machine of an outgoing initiator request (B2C, Reversal, Transaction Status,
//! Account Balance): one pure function per event, like the payment's.
//!
//! A request is stored as `sending` before it leaves, and is sent once. Daraja's acknowledgement
//! makes it `accepted`; the verdict comes later, by the result callback (`completed` or
//! `failed`). What is not known — the acknowledgement was lost, the request expired in Daraja's
//! queue, no result came — makes a request that moves money `unknown`: it is resolved by asking
//! Transaction Status, never by sending it again. A request that only reads (status, balance)
//! and gets no answer simply fails: asking again is a new request, and harmless.
//!
//! The rules that keep money safe:
//! * a final state is set once; a later result that disagrees changes nothing (it is kept on the
//!   timeline for a person). One exception: a read we gave up for want of an answer (failed
//!   with no result code from Daraja) takes Daraja's answer when it comes after all;
//! * an `unknown` request that moves money is never failed by time: Transaction Status either
//!   finds it (completed) or the request is held for a person once asking has gone on long enough;
//! * the owner (refund, payout, receipt check) is told exactly when the request first becomes
//!   final (`notify_owner`);
//! * a request held for a person may be settled by hand (what the person found in the M-Pesa
//!   portal); Daraja's own answer that comes later and disagrees books nothing again: it holds
//!   the request for a person once more, until a person acknowledges the contradiction. The
//!   same answer delivered again is kept for the record; a different one holds it again;
//! * a receipt a person recorded by hand on one request is not booked on another by Daraja's
//!   answer: that other request is held for a person instead.

use serde::{Deserialize, Serialize};

use crate::money::Cents;
use crate::result_code::ResultCode;

/// Which Daraja API a request calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    B2c,
    Reversal,
    TransactionStatus,
    AccountBalance,
}

impl RequestKind {
    pub const ALL: [RequestKind; 4] = [
        RequestKind::B2c,
        RequestKind::Reversal,
        RequestKind::TransactionStatus,
        RequestKind::AccountBalance,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::B2c => "b2c",
            RequestKind::Reversal => "reversal",
            RequestKind::TransactionStatus => "transaction_status",
            RequestKind::AccountBalance => "account_balance",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the request moves money: then it is never sent twice, and what is unknown about
    /// it is found out by Transaction Status.
    pub fn moves_money(self) -> bool {
        matches!(self, RequestKind::B2c | RequestKind::Reversal)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Stored; the one send is under way (or the process stopped during it).
    Sending,
    /// Daraja queued it; the result has not come.
    Accepted,
    /// Whether Daraja acted is not known: asked about by Transaction Status.
    Unknown,
    Completed,
    Failed,
}

impl RequestStatus {
    pub const ALL: [RequestStatus; 5] = [
        RequestStatus::Sending,
        RequestStatus::Accepted,
        RequestStatus::Unknown,
        RequestStatus::Completed,
        RequestStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Sending => "sending",
            RequestStatus::Accepted => "accepted",
            RequestStatus::Unknown => "unknown",
            RequestStatus::Completed => "completed",
            RequestStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        matches!(self, RequestStatus::Completed | RequestStatus::Failed)
    }
}

impl std::fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the rules need to know about a stored request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSnapshot {
    pub kind: RequestKind,
    pub status: RequestStatus,
    pub conversation_id: Option<String>,
    pub result_code: Option<ResultCode>,
    pub receipt: Option<String>,
    pub needs_review: bool,
    /// Its final state was recorded by a person, not by Daraja.
    pub settled_by_hand: bool,
    /// A person acknowledged that Daraja contradicts the outcome recorded by hand.
    pub acknowledged: bool,
    /// The answer they acknowledged (`None` for an acknowledgement recorded before it was kept:
    /// then every later answer is kept for the record, as it was then).
    pub acknowledged_contradiction: Option<Contradiction>,
    pub created_at_ms: i64,
}

/// What Daraja said about a request a person settled by hand, when it disagreed with them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contradiction {
    pub completed: bool,
    pub receipt: Option<String>,
}

impl Contradiction {
    /// Whether `later` says nothing this one did not: the same verdict, and no other receipt (an
    /// answer without one, such as a Reversal's Transaction Status, names none).
    pub fn repeated_by(&self, later: &Contradiction) -> bool {
        self.completed == later.completed
            && (later.receipt.is_none() || self.receipt.is_none() || self.receipt == later.receipt)
    }
}

/// The key of a request's stored result details that says a person recorded its outcome.
pub const SETTLED_BY_HAND: &str = "settled_by_hand";
/// The key of a request's stored result details that says a person acknowledged a
/// contradiction of the outcome recorded by hand.
pub const ACKNOWLEDGED: &str = "acknowledged";
/// The key of a request's stored result details that holds the last [`Contradiction`]; an
/// acknowledgement keeps a copy of the one it acknowledged under the same key.
pub const CONTRADICTED: &str = "contradicted";

/// A `Result` callback as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultReport {
    pub result_code: ResultCode,
    pub result_desc: String,
    /// The receipt of a success (`TransactionReceipt`, or the `TransactionID`).
    pub receipt: Option<String>,
    /// `ResultType`, as text (`"0"` completed, `"1"` waiting for further messages).
    pub result_type: Option<String>,
}

impl ResultReport {
    /// Not the transaction's outcome yet: `ResultType` 1 ("waiting for further messages"), or
    /// `100000000` ("Request cached, waiting for resending"), which can appear in any initiator
    /// result.
    pub fn is_interim(&self) -> bool {
        self.result_type.as_deref().map(str::trim) == Some("1")
            || self.result_code.as_str() == "100000000"
    }
}

/// What a Transaction Status answer says about the transaction a request made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusFinding {
    /// Found, `TransactionStatus` "Completed".
    Completed {
        receipt: Option<String>,
        amount: Option<Cents>,
    },
    /// Found, and reversed since (for a Reversal: the reversal went through).
    Reversed { receipt: Option<String> },
    /// Not found (`2032`), or any answer that does not settle it: ask again later.
    NotFound { result_code: ResultCode },
}

/// Which event produced a transition; it names the entry on the request's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestEventKind {
    Accepted,
    Refused,
    SendUnknown,
    Result,
    QueueTimeout,
    StatusFound,
    NoAnswer,
    HeldForReview,
    /// A person recorded the outcome of a held request.
    SettledByHand,
    /// Daraja's answer disagrees with the outcome a person recorded: held again.
    Contradicted,
    /// Transaction Status answered about a request held for a person (not settled by one):
    /// its answer settled it and lifted the hold.
    SettledByLateAnswer,
    /// A person acknowledged a contradiction: the hold is lifted, nothing else changes.
    Acknowledged,
    /// Daraja's answer brings a receipt a person recorded by hand on another request: not
    /// booked, held for a person.
    ReceiptInUse,
}

impl RequestEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestEventKind::Accepted => "accepted",
            RequestEventKind::Refused => "refused",
            RequestEventKind::SendUnknown => "send_unknown",
            RequestEventKind::Result => "result",
            RequestEventKind::QueueTimeout => "queue_timeout",
            RequestEventKind::StatusFound => "status_found",
            RequestEventKind::NoAnswer => "no_answer",
            RequestEventKind::HeldForReview => "held_for_review",
            RequestEventKind::SettledByHand => "settled_by_hand",
            RequestEventKind::Contradicted => "contradicted",
            RequestEventKind::SettledByLateAnswer => "settled_by_late_answer",
            RequestEventKind::Acknowledged => "acknowledged",
            RequestEventKind::ReceiptInUse => "receipt_in_use",
        }
    }
}

/// A change to write. Fields that are `None` keep their stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTransition {
    pub kind: RequestEventKind,
    pub status: RequestStatus,
    pub originator_conversation_id: Option<String>,
    pub conversation_id: Option<String>,
    pub result_code: Option<ResultCode>,
    pub result_desc: Option<String>,
    pub receipt: Option<String>,
    /// Set when this transition holds the request for a person.
    pub hold: bool,
    /// Set when a person's decision ends the hold.
    pub clear_hold: bool,
    /// The request became final with this transition: its owner is told.
    pub notify_owner: bool,
    pub note: Option<String>,
    /// What Daraja said, when this transition holds a request settled by hand because it
    /// disagreed (kept with the request, for an acknowledgement to name).
    pub contradiction: Option<Contradiction>,
}

impl RequestTransition {
    fn new(kind: RequestEventKind, status: RequestStatus) -> Self {
        RequestTransition {
            kind,
            status,
            originator_conversation_id: None,
            conversation_id: None,
            result_code: None,
            result_desc: None,
            receipt: None,
            hold: false,
            clear_hold: false,
            notify_owner: status.is_final(),
            note: None,
            contradiction: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOutcome {
    Changed(RequestTransition),
    /// The event repeats what is recorded: nothing changes, no one is told.
    Duplicate,
    /// The event changes nothing, for the stated reason (kept on the timeline).
    Unchanged(&'static str),
}

impl RequestOutcome {
    pub fn transition(&self) -> Option<&RequestTransition> {
        match self {
            RequestOutcome::Changed(t) => Some(t),
            _ => None,
        }
    }
}

/// Daraja queued the request (`ResponseCode` 0) and named it.
pub fn on_accepted(
    r: &RequestSnapshot,
    originator_conversation_id: &str,
    conversation_id: &str,
) -> RequestOutcome {
    match r.status {
        RequestStatus::Sending | RequestStatus::Unknown if r.conversation_id.is_none() => {
            let mut t = RequestTransition::new(RequestEventKind::Accepted, RequestStatus::Accepted);
            t.originator_conversation_id = Some(originator_conversation_id.to_owned());
            t.conversation_id = Some(conversation_id.to_owned());
            RequestOutcome::Changed(t)
        }
        _ if r.conversation_id.as_deref() == Some(conversation_id) => RequestOutcome::Duplicate,
        // The result came before the acknowledgement was recorded: keep the ids only.
        _ if r.conversation_id.is_none() => {
            let mut t = RequestTransition::new(RequestEventKind::Accepted, r.status);
            t.notify_owner = false;
            t.originator_conversation_id = Some(originator_conversation_id.to_owned());
            t.conversation_id = Some(conversation_id.to_owned());
            RequestOutcome::Changed(t)
        }
        _ => RequestOutcome::Unchanged("the request already has another ConversationID"),
    }
}

/// Daraja refused the request synchronously (its error envelope): nothing was queued.
pub fn on_refused(r: &RequestSnapshot, error_code: &str, error_message: &str) -> RequestOutcome {
    match r.status {
        RequestStatus::Sending => {
            let mut t = RequestTransition::new(RequestEventKind::Refused, RequestStatus::Failed);
            t.result_code = Some(ResultCode::new(error_code));
            t.result_desc = Some(error_message.to_owned());
            RequestOutcome::Changed(t)
        }
        _ => RequestOutcome::Unchanged("a refusal can only end a request that was never accepted"),
    }
}

/// The request may or may not have reached Daraja (a timeout after sending, a lost answer).
/// It is never sent again.
pub fn on_send_unknown(r: &RequestSnapshot, reason: &str) -> RequestOutcome {
    match r.status {
        RequestStatus::Sending => {
            let mut t =
                RequestTransition::new(RequestEventKind::SendUnknown, RequestStatus::Unknown);
            t.note = Some(reason.to_owned());
            RequestOutcome::Changed(t)
        }
        _ => RequestOutcome::Unchanged("the request already moved on"),
    }
}

/// The `Result` callback for this request.
pub fn on_result(r: &RequestSnapshot, report: &ResultReport) -> RequestOutcome {
    // For a payout or a refund, failing on an interim answer would invite paying again: its
    // outcome is asked (Transaction Status), as after a queue timeout.
    if report.is_interim() && r.kind.moves_money() {
        if r.settled_by_hand || r.status.is_final() || r.status == RequestStatus::Unknown {
            return RequestOutcome::Unchanged("an interim result settles nothing");
        }
        let mut t = RequestTransition::new(RequestEventKind::Result, RequestStatus::Unknown);
        t.note = Some(format!(
            "an interim result ({}: {}): asking Transaction Status",
            report.result_code.as_str(),
            report.result_desc
        ));
        return RequestOutcome::Changed(t);
    }
    if r.settled_by_hand {
        let success = report.result_code.is_success();
        return against_settlement(
            r,
            success,
            report.receipt.as_deref().filter(|_| success),
            "Daraja's result",
        );
    }
    // A question we gave up (no answer in time) takes Daraja's answer when it comes after all:
    // nothing of ours was final about it, and its owner is told again.
    if r.status.is_final() && !given_up(r) {
        let same_code = r.result_code.as_ref() == Some(&report.result_code);
        let same_receipt = !report.result_code.is_success() || r.receipt == report.receipt;
        return if same_code && same_receipt {
            RequestOutcome::Duplicate
        } else {
            RequestOutcome::Unchanged("the request is already final; a disagreeing result is kept")
        };
    }
    let status = if report.result_code.is_success() {
        RequestStatus::Completed
    } else {
        RequestStatus::Failed
    };
    let mut t = RequestTransition::new(RequestEventKind::Result, status);
    t.result_code = Some(report.result_code.clone());
    t.result_desc = Some(report.result_desc.clone());
    if report.result_code.is_success() {
        t.receipt = report.receipt.clone();
    }
    if given_up(r) {
        t.note = Some("answered after it was given up: the answer is applied now".into());
    }
    // Held for a person, not yet settled by one: M-Pesa's own result settles it and lifts the
    // hold, as a late Transaction Status answer does (a person has nothing left to decide).
    if r.needs_review {
        t.kind = RequestEventKind::SettledByLateAnswer;
        t.clear_hold = true;
        t.note = Some(
            "Daraja's result came after the request was held for a person: it settles it (nothing was sent again)"
                .into(),
        );
    }
    RequestOutcome::Changed(t)
}

/// A read (Transaction Status, Account Balance) that we failed because its answer did not come
/// in time — not Daraja's verdict: failed, with no result code from Daraja.
pub fn given_up(r: &RequestSnapshot) -> bool {
    !r.kind.moves_money() && r.status == RequestStatus::Failed && r.result_code.is_none()
}

/// Daraja's notice to `QueueTimeOutURL`: the request expired in its queue. Money may still have
/// moved (Daraja does not say), so a request that moves money becomes `unknown`; a read fails.
pub fn on_queue_timeout(r: &RequestSnapshot) -> RequestOutcome {
    if r.status.is_final() {
        return RequestOutcome::Unchanged("the request is already final");
    }
    if r.kind.moves_money() {
        if r.status == RequestStatus::Unknown {
            return RequestOutcome::Duplicate;
        }
        let mut t = RequestTransition::new(RequestEventKind::QueueTimeout, RequestStatus::Unknown);
        t.note = Some("expired in Daraja's queue: asking Transaction Status".into());
        return RequestOutcome::Changed(t);
    }
    let mut t = RequestTransition::new(RequestEventKind::QueueTimeout, RequestStatus::Failed);
    t.result_desc = Some("the request expired in Daraja's queue".into());
    RequestOutcome::Changed(t)
}

/// What Transaction Status found about the transaction this request made.
pub fn on_status_finding(r: &RequestSnapshot, finding: &StatusFinding) -> RequestOutcome {
    if r.settled_by_hand {
        return match (r.kind, finding) {
            (RequestKind::B2c, StatusFinding::Completed { receipt, .. }) => {
                against_settlement(r, true, receipt.as_deref(), "Transaction Status")
            }
            (RequestKind::Reversal, StatusFinding::Reversed { .. }) => {
                against_settlement(r, true, None, "Transaction Status")
            }
            // Not found (yet) proves nothing either way.
            _ => RequestOutcome::Unchanged("the outcome was recorded by hand"),
        };
    }
    if r.status.is_final() {
        return match (r.status, finding) {
            (RequestStatus::Completed, StatusFinding::Completed { .. })
                if r.kind == RequestKind::B2c =>
            {
                RequestOutcome::Duplicate
            }
            (RequestStatus::Completed, StatusFinding::Reversed { .. })
                if r.kind == RequestKind::Reversal =>
            {
                RequestOutcome::Duplicate
            }
            _ => RequestOutcome::Unchanged("the request is already final"),
        };
    }
    let found = |receipt: &Option<String>| {
        let mut t = RequestTransition::new(RequestEventKind::StatusFound, RequestStatus::Completed);
        t.result_code = Some(ResultCode::new(ResultCode::SUCCESS));
        t.result_desc = Some("found by Transaction Status".into());
        t.receipt = receipt.clone();
        // Held for a person, not yet settled by one: M-Pesa's answer settles it and lifts the
        // hold, as it would have before the hold.
        if r.needs_review {
            t.kind = RequestEventKind::SettledByLateAnswer;
            t.clear_hold = true;
            t.note = Some(
                "Transaction Status answered after the request was held for a person: its answer settles it (nothing was sent again)"
                    .into(),
            );
        }
        RequestOutcome::Changed(t)
    };
    match (r.kind, finding) {
        (RequestKind::B2c, StatusFinding::Completed { receipt, .. }) => found(receipt),
        // The original payment shows as reversed: the reversal went through. Its own receipt is
        // not in this answer.
        (RequestKind::Reversal, StatusFinding::Reversed { .. }) => found(&None),
        (RequestKind::Reversal, StatusFinding::Completed { .. }) => {
            RequestOutcome::Unchanged("the payment is not reversed (yet): asking again later")
        }
        (_, StatusFinding::NotFound { .. }) if r.needs_review => RequestOutcome::Unchanged(
            "Transaction Status does not find it: still held for a person (never failed by it)",
        ),
        (_, StatusFinding::NotFound { .. }) => RequestOutcome::Unchanged(
            "Transaction Status does not find it (yet): asking again later",
        ),
        _ => RequestOutcome::Unchanged("Transaction Status says nothing about this request"),
    }
}

/// A person recorded the outcome of a request held for them: `completed` (with the M-Pesa
/// receipt they saw, if any) or failed. Only a request that moves money, is held, and is not
/// final can be settled this way; its owner is told as by Daraja's own result.
pub fn on_settled_by_hand(
    r: &RequestSnapshot,
    completed: bool,
    receipt: Option<&str>,
    note: &str,
) -> RequestOutcome {
    if r.status.is_final() {
        return RequestOutcome::Unchanged("the request is already final");
    }
    if !r.needs_review || !r.kind.moves_money() {
        return RequestOutcome::Unchanged(
            "only a request held for a person can be settled by hand",
        );
    }
    let status = if completed {
        RequestStatus::Completed
    } else {
        RequestStatus::Failed
    };
    let mut t = RequestTransition::new(RequestEventKind::SettledByHand, status);
    t.clear_hold = true;
    t.note = Some(note.to_owned());
    t.result_desc = Some(format!("recorded by hand: {note}"));
    if completed {
        t.receipt = receipt.map(str::to_owned);
    }
    RequestOutcome::Changed(t)
}

/// Daraja's word (`what`) on a request a person settled: nothing is booked again; when it
/// disagrees, the request is held for a person once more (its state stays what they recorded).
fn against_settlement(
    r: &RequestSnapshot,
    reported_completed: bool,
    receipt: Option<&str>,
    what: &str,
) -> RequestOutcome {
    if r.needs_review {
        return RequestOutcome::Unchanged("held for a person already: kept for them");
    }
    let recorded_completed = r.status == RequestStatus::Completed;
    let same_receipt = receipt.is_none() || r.receipt.is_none() || r.receipt.as_deref() == receipt;
    if recorded_completed == reported_completed && (!reported_completed || same_receipt) {
        return RequestOutcome::Unchanged("it agrees with the outcome recorded by hand");
    }
    let answer = Contradiction {
        completed: reported_completed,
        receipt: receipt.map(str::to_owned),
    };
    // A person has looked and closed the matter: the answer they saw, delivered again, is kept
    // for the record. A different one (another verdict, another receipt) is news: held again.
    if r.acknowledged {
        match &r.acknowledged_contradiction {
            Some(seen) if !seen.repeated_by(&answer) => {}
            Some(_) => {
                return RequestOutcome::Unchanged(
                    "a person acknowledged this contradiction: the same answer again is kept for the record",
                );
            }
            None => {
                return RequestOutcome::Unchanged(
                    "a person acknowledged the contradiction: later answers are kept for the record",
                );
            }
        }
    }
    let mut t = RequestTransition::new(RequestEventKind::Contradicted, r.status);
    t.notify_owner = false;
    t.hold = true;
    t.contradiction = Some(answer);
    t.note = Some(format!(
        "{what} contradicts the manual settlement ({} by hand, {} by M-Pesa{}): nothing is paid or booked again; a person decides",
        r.status,
        if reported_completed {
            "completed"
        } else {
            "failed"
        },
        receipt
            .map(|x| format!(", receipt {x}"))
            .unwrap_or_default(),
    ));
    RequestOutcome::Changed(t)
}

/// A person acknowledges that Daraja contradicts the outcome they (or another person) recorded
/// by hand, with a note: the hold is lifted and nothing else changes (status, receipt, amounts;
/// nothing is sent). Only a final request settled by hand and held after a contradiction, once
/// per contradiction: a different answer after the acknowledgement holds it again, to be
/// acknowledged again.
pub fn on_acknowledged(r: &RequestSnapshot, note: &str) -> RequestOutcome {
    if r.acknowledged && !r.needs_review {
        return RequestOutcome::Unchanged("the contradiction was acknowledged already");
    }
    if !r.status.is_final() || !r.settled_by_hand || !r.needs_review {
        return RequestOutcome::Unchanged(
            "only a request held after M-Pesa contradicted the outcome recorded by hand can be acknowledged",
        );
    }
    let mut t = RequestTransition::new(RequestEventKind::Acknowledged, r.status);
    t.notify_owner = false;
    t.clear_hold = true;
    t.note = Some(note.to_owned());
    RequestOutcome::Changed(t)
}

/// Whether [`on_acknowledged`] would lift the hold now: a page offers "Acknowledge" only then.
pub fn may_acknowledge(r: &RequestSnapshot) -> bool {
    matches!(on_acknowledged(r, ""), RequestOutcome::Changed(_))
}

/// Daraja's answer (a result, a Transaction Status finding) would record `receipt` on this
/// request, but a person already recorded that receipt by hand on another request (`holder`,
/// named by its owner: "payout po_…"). One of the two is wrong and only a person can tell
/// which: nothing is booked on a guess. The request keeps its state and is held for a person.
pub fn on_receipt_in_use(r: &RequestSnapshot, receipt: &str, holder: &str) -> RequestOutcome {
    let mut t = RequestTransition::new(RequestEventKind::ReceiptInUse, r.status);
    t.notify_owner = false;
    t.hold = true;
    t.note = Some(format!(
        "M-Pesa's answer brings receipt {receipt}, which a person recorded by hand on {holder}: nothing is booked; a person decides"
    ));
    RequestOutcome::Changed(t)
}

/// How long the resolver waits and asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvePolicy {
    /// From acceptance, how long a result may take before Transaction Status is asked (or, for
    /// a read, before it is given up).
    pub result_wait_ms: i64,
    /// From creation, how long Transaction Status is asked about a request that moves money
    /// before a person decides.
    pub keep_asking_ms: i64,
}

/// What the resolver does with an open request that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DueAction {
    /// Ask Transaction Status about it (money moved or not?).
    AskStatus,
    /// Write this transition (a read given up; a request held for a person).
    Apply(RequestTransition),
    /// Nothing to do.
    Nothing,
}

/// The resolver found `r` open and due at `now`.
pub fn on_due(r: &RequestSnapshot, now_ms: i64, policy: &ResolvePolicy) -> DueAction {
    if r.status.is_final() || r.needs_review {
        return DueAction::Nothing;
    }
    if !r.kind.moves_money() {
        let mut t = RequestTransition::new(RequestEventKind::NoAnswer, RequestStatus::Failed);
        t.result_desc = Some(format!(
            "no result from Daraja within {} seconds",
            policy.result_wait_ms / 1000
        ));
        return DueAction::Apply(t);
    }
    if now_ms >= r.created_at_ms.saturating_add(policy.keep_asking_ms) {
        let mut t = RequestTransition::new(RequestEventKind::HeldForReview, r.status);
        t.hold = true;
        t.note = Some(format!(
            "Transaction Status has not found it after {} hours: a person decides (it is never sent again)",
            policy.keep_asking_ms / 3_600_000
        ));
        return DueAction::Apply(t);
    }
    DueAction::AskStatus
}

/// When an open request is looked at next, after it was stored, accepted, or asked about at
/// `now` (`attempts` questions so far). `None`: never (final, or held for a person).
pub fn next_check_at(
    r: &RequestSnapshot,
    now_ms: i64,
    attempts: u32,
    policy: &ResolvePolicy,
) -> Option<i64> {
    if r.status.is_final() || r.needs_review {
        return None;
    }
    if attempts == 0 {
        return Some(now_ms.saturating_add(policy.result_wait_ms));
    }
    // Doubling from the result wait, at most an hour apart.
    let step = policy
        .result_wait_ms
        .max(1)
        .saturating_mul(1i64 << attempts.min(12))
        .min(3_600_000);
    Some(now_ms.saturating_add(step))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(kind: RequestKind, status: RequestStatus) -> RequestSnapshot {
        RequestSnapshot {
            kind,
            status,
            conversation_id: None,
            result_code: None,
            receipt: None,
            needs_review: false,
            settled_by_hand: false,
            acknowledged: false,
            acknowledged_contradiction: None,
            created_at_ms: 1_000,
        }
    }

    fn report(code: &str, receipt: Option<&str>) -> ResultReport {
        ResultReport {
            result_code: ResultCode::new(code),
            result_desc: format!("code {code}"),
            receipt: receipt.map(str::to_owned),
            result_type: Some("0".into()),
        }
    }

    fn changed(o: RequestOutcome) -> RequestTransition {
        match o {
            RequestOutcome::Changed(t) => t,
            other => panic!("expected a change, got {other:?}"),
        }
    }

    const POLICY: ResolvePolicy = ResolvePolicy {
        result_wait_ms: 60_000,
        keep_asking_ms: 86_400_000,
    };

    #[test]
    fn acceptance_records_the_ids_once() {
        let r = snap(RequestKind::B2c, RequestStatus::Sending);
        let t = changed(on_accepted(&r, "ocid", "AG_1"));
        assert_eq!(t.status, RequestStatus::Accepted);
        assert_eq!(t.conversation_id.as_deref(), Some("AG_1"));
        assert!(!t.notify_owner);
        let mut accepted = r.clone();
        accepted.status = RequestStatus::Accepted;
        accepted.conversation_id = Some("AG_1".into());
        assert_eq!(
            on_accepted(&accepted, "ocid", "AG_1"),
            RequestOutcome::Duplicate
        );
        assert!(matches!(
            on_accepted(&accepted, "ocid", "AG_2"),
            RequestOutcome::Unchanged(_)
        ));
        // A result that came first: the request stays completed, gains its ids, no one is told.
        let mut done = r;
        done.status = RequestStatus::Completed;
        let t = changed(on_accepted(&done, "ocid", "AG_1"));
        assert_eq!(t.status, RequestStatus::Completed);
        assert!(!t.notify_owner);
    }

    #[test]
    fn a_refusal_fails_only_a_request_never_accepted() {
        let t = changed(on_refused(
            &snap(RequestKind::Reversal, RequestStatus::Sending),
            "400.002.02",
            "Bad Request - Invalid TransactionID",
        ));
        assert_eq!(t.status, RequestStatus::Failed);
        assert!(t.notify_owner);
        for status in [RequestStatus::Accepted, RequestStatus::Unknown] {
            assert!(matches!(
                on_refused(&snap(RequestKind::Reversal, status), "x", "y"),
                RequestOutcome::Unchanged(_)
            ));
        }
    }

    /// "Request cached, waiting for resending", or `ResultType` 1, is not a payout's outcome:
    /// failing it would invite paying again. It is asked about; a later final result settles it.
    #[test]
    fn an_interim_result_is_asked_about_not_failed() {
        let cached = report("100000000", None);
        let mut waiting = report("0", None);
        waiting.result_type = Some(" 1".into());
        for interim in [&cached, &waiting] {
            assert!(interim.is_interim());
            for kind in [RequestKind::B2c, RequestKind::Reversal] {
                let t = changed(on_result(&snap(kind, RequestStatus::Accepted), interim));
                assert_eq!(
                    (t.status, t.notify_owner, t.result_code.is_some()),
                    (RequestStatus::Unknown, false, false)
                );
                for status in [RequestStatus::Unknown, RequestStatus::Completed] {
                    assert!(matches!(
                        on_result(&snap(kind, status), interim),
                        RequestOutcome::Unchanged(_)
                    ));
                }
            }
        }
        let final_failure = report("2040", None);
        assert!(!final_failure.is_interim());
        let t = changed(on_result(
            &snap(RequestKind::B2c, RequestStatus::Unknown),
            &final_failure,
        ));
        assert_eq!(t.status, RequestStatus::Failed);
    }

    #[test]
    fn results_settle_once_and_duplicates_change_nothing() {
        for from in [
            RequestStatus::Sending,
            RequestStatus::Accepted,
            RequestStatus::Unknown,
        ] {
            let r = snap(RequestKind::B2c, from);
            let ok = changed(on_result(&r, &report("0", Some("SG6"))));
            assert_eq!(
                (ok.status, ok.receipt.as_deref(), ok.notify_owner),
                (RequestStatus::Completed, Some("SG6"), true)
            );
            let failed = changed(on_result(&r, &report("2040", Some("SKE0000000"))));
            assert_eq!(failed.status, RequestStatus::Failed);
            assert_eq!(
                failed.receipt, None,
                "a failure's placeholder is no receipt"
            );
        }
        let mut done = snap(RequestKind::B2c, RequestStatus::Completed);
        done.result_code = Some(ResultCode::new("0"));
        done.receipt = Some("SG6".into());
        assert_eq!(
            on_result(&done, &report("0", Some("SG6"))),
            RequestOutcome::Duplicate
        );
        assert!(matches!(
            on_result(&done, &report("0", Some("OTHER"))),
            RequestOutcome::Unchanged(_)
        ));
        assert!(matches!(
            on_result(&done, &report("1", None)),
            RequestOutcome::Unchanged(_)
        ));
        let mut failed = snap(RequestKind::Reversal, RequestStatus::Failed);
        failed.result_code = Some(ResultCode::new("R000001"));
        assert_eq!(
            on_result(&failed, &report("R000001", None)),
            RequestOutcome::Duplicate
        );
        assert!(matches!(
            on_result(&failed, &report("0", Some("X"))),
            RequestOutcome::Unchanged(_)
        ));
    }

    #[test]
    fn a_queue_timeout_makes_money_unknown_and_fails_a_read() {
        for kind in [RequestKind::B2c, RequestKind::Reversal] {
            let t = changed(on_queue_timeout(&snap(kind, RequestStatus::Accepted)));
            assert_eq!((t.status, t.notify_owner), (RequestStatus::Unknown, false));
            assert_eq!(
                on_queue_timeout(&snap(kind, RequestStatus::Unknown)),
                RequestOutcome::Duplicate
            );
        }
        for kind in [RequestKind::TransactionStatus, RequestKind::AccountBalance] {
            let t = changed(on_queue_timeout(&snap(kind, RequestStatus::Accepted)));
            assert_eq!((t.status, t.notify_owner), (RequestStatus::Failed, true));
        }
        assert!(matches!(
            on_queue_timeout(&snap(RequestKind::B2c, RequestStatus::Completed)),
            RequestOutcome::Unchanged(_)
        ));
    }

    #[test]
    fn transaction_status_completes_what_it_finds_and_never_fails_anything() {
        let unknown = snap(RequestKind::B2c, RequestStatus::Unknown);
        let t = changed(on_status_finding(
            &unknown,
            &StatusFinding::Completed {
                receipt: Some("SG7".into()),
                amount: None,
            },
        ));
        assert_eq!(
            (t.status, t.receipt.as_deref(), t.notify_owner),
            (RequestStatus::Completed, Some("SG7"), true)
        );
        let not_found = StatusFinding::NotFound {
            result_code: ResultCode::new("2032"),
        };
        for kind in [RequestKind::B2c, RequestKind::Reversal] {
            for status in [
                RequestStatus::Sending,
                RequestStatus::Accepted,
                RequestStatus::Unknown,
            ] {
                assert!(matches!(
                    on_status_finding(&snap(kind, status), &not_found),
                    RequestOutcome::Unchanged(_)
                ));
            }
        }
        let reversal = snap(RequestKind::Reversal, RequestStatus::Unknown);
        assert_eq!(
            changed(on_status_finding(
                &reversal,
                &StatusFinding::Reversed { receipt: None }
            ))
            .status,
            RequestStatus::Completed
        );
        assert!(matches!(
            on_status_finding(
                &reversal,
                &StatusFinding::Completed {
                    receipt: None,
                    amount: None
                }
            ),
            RequestOutcome::Unchanged(_)
        ));
    }

    #[test]
    fn a_due_request_that_moves_money_is_asked_about_then_held_never_failed() {
        let r = snap(RequestKind::B2c, RequestStatus::Unknown);
        assert_eq!(on_due(&r, 2_000, &POLICY), DueAction::AskStatus);
        match on_due(&r, 1_000 + POLICY.keep_asking_ms, &POLICY) {
            DueAction::Apply(t) => {
                assert!(t.hold);
                assert_eq!(t.status, RequestStatus::Unknown);
                assert!(!t.notify_owner);
            }
            other => panic!("{other:?}"),
        }
        let read = snap(RequestKind::TransactionStatus, RequestStatus::Accepted);
        match on_due(&read, 2_000, &POLICY) {
            DueAction::Apply(t) => assert_eq!(t.status, RequestStatus::Failed),
            other => panic!("{other:?}"),
        }
        let mut held = r;
        held.needs_review = true;
        assert_eq!(on_due(&held, 2_000, &POLICY), DueAction::Nothing);
        assert_eq!(next_check_at(&held, 2_000, 1, &POLICY), None);
    }

    #[test]
    fn only_a_held_open_request_is_settled_by_hand_and_its_owner_is_told() {
        let open = snap(RequestKind::B2c, RequestStatus::Unknown);
        assert!(matches!(
            on_settled_by_hand(&open, true, Some("SGB2PAID01"), "seen in the portal"),
            RequestOutcome::Unchanged(_)
        ));
        let mut held = open;
        held.needs_review = true;
        let t = changed(on_settled_by_hand(
            &held,
            true,
            Some("SGB2PAID01"),
            "seen in the portal",
        ));
        assert_eq!(
            (
                t.kind,
                t.status,
                t.receipt.as_deref(),
                t.clear_hold,
                t.notify_owner
            ),
            (
                RequestEventKind::SettledByHand,
                RequestStatus::Completed,
                Some("SGB2PAID01"),
                true,
                true
            )
        );
        let t = changed(on_settled_by_hand(
            &held,
            false,
            Some("IGNORED"),
            "not in the portal",
        ));
        assert_eq!((t.status, t.receipt), (RequestStatus::Failed, None));
        let mut done = held;
        done.status = RequestStatus::Completed;
        assert!(matches!(
            on_settled_by_hand(&done, false, None, "x"),
            RequestOutcome::Unchanged(_)
        ));
        let mut read = snap(RequestKind::TransactionStatus, RequestStatus::Accepted);
        read.needs_review = true;
        assert!(matches!(
            on_settled_by_hand(&read, true, None, "x"),
            RequestOutcome::Unchanged(_)
        ));
    }

    #[test]
    fn daraja_disagreeing_with_a_manual_settlement_holds_it_again_and_books_nothing() {
        let mut paid = snap(RequestKind::B2c, RequestStatus::Completed);
        paid.settled_by_hand = true;
        paid.receipt = Some("SGB2PAID01".into());
        // Agreeing answers are kept, nothing changes.
        for agree in [
            on_result(&paid, &report("0", Some("SGB2PAID01"))),
            on_status_finding(
                &paid,
                &StatusFinding::Completed {
                    receipt: Some("SGB2PAID01".into()),
                    amount: None,
                },
            ),
        ] {
            assert!(matches!(agree, RequestOutcome::Unchanged(_)), "{agree:?}");
        }
        for disagree in [
            on_result(&paid, &report("2040", None)),
            on_result(&paid, &report("0", Some("OTHER00001"))),
        ] {
            let t = changed(disagree);
            assert_eq!(
                (t.kind, t.status, t.hold, t.notify_owner, t.receipt),
                (
                    RequestEventKind::Contradicted,
                    RequestStatus::Completed,
                    true,
                    false,
                    None
                )
            );
            assert!(
                t.note
                    .unwrap()
                    .contains("contradicts the manual settlement")
            );
        }
        let mut failed = snap(RequestKind::Reversal, RequestStatus::Failed);
        failed.settled_by_hand = true;
        assert!(matches!(
            on_result(&failed, &report("R000001", None)),
            RequestOutcome::Unchanged(_)
        ));
        let t = changed(on_status_finding(
            &failed,
            &StatusFinding::Reversed { receipt: None },
        ));
        assert_eq!((t.status, t.hold), (RequestStatus::Failed, true));
        // Held again: later answers are only kept.
        failed.needs_review = true;
        assert!(matches!(
            on_result(&failed, &report("0", Some("X"))),
            RequestOutcome::Unchanged(_)
        ));
    }

    #[test]
    fn a_contradiction_is_acknowledged_once_and_only_the_hold_is_lifted() {
        let mut paid = snap(RequestKind::B2c, RequestStatus::Completed);
        paid.settled_by_hand = true;
        paid.receipt = Some("SGB2PAID01".into());
        // Not held: nothing to acknowledge.
        assert!(matches!(
            on_acknowledged(&paid, "seen"),
            RequestOutcome::Unchanged(_)
        ));
        let mut held = paid.clone();
        held.needs_review = true;
        let t = changed(on_acknowledged(&held, "Refunded the recipient by hand"));
        assert_eq!(
            (
                t.kind,
                t.status,
                t.clear_hold,
                t.hold,
                t.notify_owner,
                t.receipt,
                t.result_code
            ),
            (
                RequestEventKind::Acknowledged,
                RequestStatus::Completed,
                true,
                false,
                false,
                None,
                None
            )
        );
        assert_eq!(t.note.as_deref(), Some("Refunded the recipient by hand"));
        assert!(may_acknowledge(&held));
        // Held but open, or held without a settlement by hand: "Record the outcome" is the way.
        let mut open = snap(RequestKind::B2c, RequestStatus::Unknown);
        open.needs_review = true;
        let mut late = snap(RequestKind::B2c, RequestStatus::Completed);
        late.needs_review = true;
        for r in [open, late] {
            assert!(matches!(
                on_acknowledged(&r, "x"),
                RequestOutcome::Unchanged(_)
            ));
            assert!(!may_acknowledge(&r), "the pages offer no form: {r:?}");
        }
        // Once: a second acknowledgement is refused, and the same contradiction delivered again
        // does not hold it again.
        let mut acknowledged = paid;
        acknowledged.acknowledged = true;
        assert_eq!(
            on_acknowledged(&acknowledged, "again"),
            RequestOutcome::Unchanged("the contradiction was acknowledged already")
        );
        assert!(matches!(
            on_result(&acknowledged, &report("2001", None)),
            RequestOutcome::Unchanged(_)
        ));
    }

    #[test]
    fn a_different_answer_after_an_acknowledgement_holds_the_request_again() {
        // Settled by hand as paid with SGB2PAID01; M-Pesa's result said it failed.
        let mut paid = snap(RequestKind::B2c, RequestStatus::Completed);
        paid.settled_by_hand = true;
        paid.receipt = Some("SGB2PAID01".into());
        let t = changed(on_result(&paid, &report("2001", None)));
        let failed = Contradiction {
            completed: false,
            receipt: None,
        };
        assert_eq!((t.hold, t.contradiction.as_ref()), (true, Some(&failed)));
        // A person acknowledged that answer.
        let mut acknowledged = paid.clone();
        acknowledged.acknowledged = true;
        acknowledged.acknowledged_contradiction = Some(failed);
        // The same verdict again (any failure code) is kept for the record.
        for code in ["2001", "1"] {
            assert!(matches!(
                on_result(&acknowledged, &report(code, None)),
                RequestOutcome::Unchanged(_)
            ));
        }
        // An answer that agrees with the settlement holds nothing.
        assert!(matches!(
            on_result(&acknowledged, &report("0", Some("SGB2PAID01"))),
            RequestOutcome::Unchanged(_)
        ));
        // Paid, but with another receipt: not what the person saw. Held again, naming it.
        let t = changed(on_result(&acknowledged, &report("0", Some("SGB2OTHR01"))));
        let other = Contradiction {
            completed: true,
            receipt: Some("SGB2OTHR01".into()),
        };
        assert_eq!(
            (
                t.kind,
                t.status,
                t.hold,
                t.notify_owner,
                t.receipt.as_deref()
            ),
            (
                RequestEventKind::Contradicted,
                RequestStatus::Completed,
                true,
                false,
                None
            )
        );
        assert_eq!(t.contradiction.as_ref(), Some(&other));
        assert!(t.note.unwrap().contains("SGB2OTHR01"));
        // Held again, it is acknowledged again; that answer repeated is then kept.
        let mut held = acknowledged.clone();
        held.needs_review = true;
        assert!(may_acknowledge(&held));
        let mut again = acknowledged.clone();
        again.acknowledged_contradiction = Some(other);
        assert!(matches!(
            on_status_finding(
                &again,
                &StatusFinding::Completed {
                    receipt: Some("SGB2OTHR01".into()),
                    amount: None
                }
            ),
            RequestOutcome::Unchanged(_)
        ));
        // An acknowledgement recorded before the answer was kept: later answers are kept.
        let mut legacy = acknowledged;
        legacy.acknowledged_contradiction = None;
        assert!(matches!(
            on_result(&legacy, &report("0", Some("SGB2OTHR01"))),
            RequestOutcome::Unchanged(_)
        ));
    }

    #[test]
    fn a_receipt_recorded_by_hand_elsewhere_holds_the_request_and_books_nothing() {
        for status in [RequestStatus::Accepted, RequestStatus::Unknown] {
            let r = snap(RequestKind::B2c, status);
            let t = changed(on_receipt_in_use(&r, "SGB2PAID01", "payout po_x"));
            assert_eq!(
                (t.kind, t.status, t.hold, t.notify_owner, t.receipt),
                (RequestEventKind::ReceiptInUse, status, true, false, None)
            );
            let note = t.note.unwrap();
            assert!(
                note.contains("SGB2PAID01") && note.contains("payout po_x"),
                "{note}"
            );
        }
    }

    #[test]
    fn a_question_given_up_takes_the_answer_that_comes_after_all_once() {
        let mut given_up_question = snap(RequestKind::TransactionStatus, RequestStatus::Failed);
        assert!(given_up(&given_up_question));
        let t = changed(on_result(&given_up_question, &report("0", Some("SKE0"))));
        assert_eq!(
            (t.kind, t.status, t.notify_owner),
            (RequestEventKind::Result, RequestStatus::Completed, true)
        );
        // Once applied it is Daraja's verdict: the same answer again is a duplicate.
        given_up_question.status = RequestStatus::Completed;
        given_up_question.result_code = Some(ResultCode::new("0"));
        given_up_question.receipt = Some("SKE0".into());
        assert_eq!(
            on_result(&given_up_question, &report("0", Some("SKE0"))),
            RequestOutcome::Duplicate
        );
        // Failed by Daraja itself, or money: not given up, final as before.
        let mut answered = snap(RequestKind::TransactionStatus, RequestStatus::Failed);
        answered.result_code = Some(ResultCode::new("2032"));
        assert!(!given_up(&answered));
        assert!(!given_up(&snap(RequestKind::B2c, RequestStatus::Failed)));
        assert!(matches!(
            on_result(&answered, &report("0", None)),
            RequestOutcome::Unchanged(_)
        ));
    }

    #[test]
    fn transaction_status_that_finds_a_held_request_settles_it_and_lifts_the_hold() {
        for (kind, finding) in [
            (
                RequestKind::B2c,
                StatusFinding::Completed {
                    receipt: Some("SG8".into()),
                    amount: None,
                },
            ),
            (
                RequestKind::Reversal,
                StatusFinding::Reversed { receipt: None },
            ),
        ] {
            let mut held = snap(kind, RequestStatus::Unknown);
            held.needs_review = true;
            let t = changed(on_status_finding(&held, &finding));
            assert_eq!(
                (t.kind, t.status, t.clear_hold, t.notify_owner),
                (
                    RequestEventKind::SettledByLateAnswer,
                    RequestStatus::Completed,
                    true,
                    true
                )
            );
        }
        // Not found proves nothing: still held, never failed.
        let mut held = snap(RequestKind::B2c, RequestStatus::Unknown);
        held.needs_review = true;
        assert!(matches!(
            on_status_finding(
                &held,
                &StatusFinding::NotFound {
                    result_code: ResultCode::new("2032")
                }
            ),
            RequestOutcome::Unchanged(_)
        ));
    }

    #[test]
    fn a_result_for_a_held_request_settles_it_and_lifts_the_hold() {
        for (kind, code, receipt, status) in [
            (RequestKind::B2c, "0", Some("SG8"), RequestStatus::Completed),
            (RequestKind::B2c, "2040", None, RequestStatus::Failed),
            (RequestKind::Reversal, "0", None, RequestStatus::Completed),
        ] {
            let mut held = snap(kind, RequestStatus::Unknown);
            held.needs_review = true;
            let t = changed(on_result(&held, &report(code, receipt)));
            assert_eq!(
                (t.kind, t.status, t.clear_hold, t.notify_owner),
                (RequestEventKind::SettledByLateAnswer, status, true, true)
            );
            assert_eq!(t.receipt.as_deref(), receipt);
        }
        // Not held: an ordinary result, no hold to lift.
        let t = changed(on_result(
            &snap(RequestKind::B2c, RequestStatus::Accepted),
            &report("0", Some("SG8")),
        ));
        assert_eq!((t.kind, t.clear_hold), (RequestEventKind::Result, false));
    }

    #[test]
    fn checks_back_off_up_to_an_hour() {
        let r = snap(RequestKind::B2c, RequestStatus::Accepted);
        assert_eq!(next_check_at(&r, 0, 0, &POLICY), Some(60_000));
        assert_eq!(next_check_at(&r, 0, 1, &POLICY), Some(120_000));
        assert_eq!(next_check_at(&r, 0, 30, &POLICY), Some(3_600_000));
        let done = snap(RequestKind::B2c, RequestStatus::Completed);
        assert_eq!(next_check_at(&done, 0, 0, &POLICY), None);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn any_status() -> impl Strategy<Value = RequestStatus> {
            prop::sample::select(RequestStatus::ALL.to_vec())
        }
        fn any_kind() -> impl Strategy<Value = RequestKind> {
            prop::sample::select(RequestKind::ALL.to_vec())
        }
        fn any_code() -> impl Strategy<Value = String> {
            prop::sample::select(vec![
                "0",
                "1",
                "2001",
                "2040",
                "R000001",
                "R000002",
                "SFC_IC0003",
                "2032",
                "17",
            ])
            .prop_map(str::to_owned)
        }

        proptest! {
            #[test]
            fn final_states_never_change_status(kind in any_kind(), status in any_status(), code in any_code()) {
                prop_assume!(status.is_final());
                let r = snap(kind, status);
                // A read we gave up takes Daraja's late result (its own test).
                prop_assume!(!given_up(&r));
                let events = [
                    on_result(&r, &report(&code, Some("R1"))),
                    on_queue_timeout(&r),
                    on_refused(&r, &code, "x"),
                    on_send_unknown(&r, "x"),
                    on_status_finding(&r, &StatusFinding::Completed { receipt: None, amount: None }),
                    on_status_finding(&r, &StatusFinding::Reversed { receipt: None }),
                ];
                for o in events {
                    if let Some(t) = o.transition() {
                        prop_assert_eq!(t.status, status);
                        prop_assert!(!t.notify_owner);
                    }
                }
            }

            #[test]
            fn the_owner_is_told_iff_the_request_first_becomes_final(kind in any_kind(), status in any_status(), code in any_code()) {
                let r = snap(kind, status);
                for o in [on_result(&r, &report(&code, Some("R1"))), on_queue_timeout(&r), on_refused(&r, &code, "x")] {
                    if let Some(t) = o.transition() {
                        prop_assert_eq!(
                            t.notify_owner,
                            t.status.is_final() && (!status.is_final() || given_up(&r))
                        );
                    }
                }
            }

            #[test]
            fn money_is_never_failed_by_time_or_by_a_queue_timeout(kind in any_kind(), status in any_status(), now in 0i64..i64::MAX / 2) {
                prop_assume!(kind.moves_money());
                let r = snap(kind, status);
                if let Some(t) = on_queue_timeout(&r).transition() {
                    prop_assert_ne!(t.status, RequestStatus::Failed);
                }
                if let DueAction::Apply(t) = on_due(&r, now, &POLICY) {
                    prop_assert_ne!(t.status, RequestStatus::Failed);
                }
            }
        }
    }
}

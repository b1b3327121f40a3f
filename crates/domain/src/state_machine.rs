//! The payment state machine: one pure function per event.
//!
//! Each function looks at a [`PaymentSnapshot`] and an event and answers with an [`Outcome`]:
//! the [`Transition`] to write, or why nothing changes. Storage applies the answer atomically,
//! together with the raw callback and the outbox rows, so the rules here are the only place a
//! payment's fate is decided.
//!
//! The rules that keep money safe:
//! * a final state is set once; only an admin's recorded decision changes it afterwards;
//! * a success is settled only when it matches what we asked for (amount, phone); otherwise the
//!   payment is held for review and keeps its state;
//! * an STK Query answer never downgrades a completed payment, and an unknown query code means
//!   "ask again", not "failed";
//! * people are told about a final state exactly when it is first reached (`notify`);
//! * a payment held for review is settled or rejected by a person only: callbacks, queries and
//!   expiry never finalise it or tell anyone, they are kept on its timeline;
//! * a payment is given up as `timed_out` only when Daraja answered our questions (or was never
//!   asked) and no final result came: when Daraja did not answer, the reconciler keeps asking
//!   for as long as Daraja keeps its records, then holds the payment for a person.

use serde::{Deserialize, Serialize};

use crate::money::{Amount, Cents};
use crate::payment::{FinalOutcome, PaymentStatus, ReviewReason};
use crate::phone::Msisdn;
use crate::result_code::{CallbackVerdict, QueryVerdict, ResultCode};

/// What the rules need to know about a stored payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentSnapshot {
    pub status: PaymentStatus,
    pub amount: Amount,
    /// `None` for a C2B payment whose MSISDN was masked or hashed.
    pub phone: Option<Msisdn>,
    pub checkout_request_id: Option<String>,
    pub mpesa_receipt_number: Option<String>,
    pub result_code: Option<ResultCode>,
    pub needs_review: bool,
    pub created_at_ms: i64,
    /// Made through a payment link: completing it settles the link (see
    /// [`crate::decision::PaymentChange::completes_through_link`]).
    pub through_link: bool,
}

/// An STK callback as the rules see it (the Daraja crate parses the wire form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackReport {
    pub result_code: ResultCode,
    pub result_desc: String,
    /// Present on a success (`ResultCode` 0), from `CallbackMetadata`.
    pub success: Option<SuccessDetails>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuccessDetails {
    pub receipt: String,
    pub amount: Option<Cents>,
    /// The paying number as Safaricom reported it: full, masked, hashed or absent.
    pub phone: Option<String>,
    /// `TransactionDate` converted from East Africa Time to Unix milliseconds.
    pub transaction_date_ms: Option<i64>,
}

/// An STK Query answer that carried a `ResultCode` (Daraja's "still being processed" error
/// answers are mapped to [`ResultCode::STILL_PROCESSING`] by the caller).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryReport {
    pub result_code: ResultCode,
    pub result_desc: String,
}

/// Which event produced a transition; it names the entry on the payment's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionKind {
    PushAccepted,
    PushRefused,
    PushOutcomeUnknown,
    /// An orphan success callback tied to a payment whose push outcome was unknown.
    CallbackAdopted,
    Callback,
    Query,
    Expired,
    AdminSettled,
    AdminRejected,
    /// A C2B payment booked from its confirmation.
    C2bConfirmation,
    /// A C2B payment booked from Pull Transactions (its confirmation never came).
    C2bPull,
    /// A C2B payment booked from a Transaction Status check.
    C2bStatus,
    /// A completion through a single-use link that another payment had already paid: the
    /// payment keeps its state and is held for review (see [`crate::link::on_already_paid`]).
    HeldForReview,
}

impl TransitionKind {
    pub const ALL: [TransitionKind; 13] = [
        TransitionKind::PushAccepted,
        TransitionKind::PushRefused,
        TransitionKind::PushOutcomeUnknown,
        TransitionKind::CallbackAdopted,
        TransitionKind::Callback,
        TransitionKind::Query,
        TransitionKind::Expired,
        TransitionKind::AdminSettled,
        TransitionKind::AdminRejected,
        TransitionKind::C2bConfirmation,
        TransitionKind::C2bPull,
        TransitionKind::C2bStatus,
        TransitionKind::HeldForReview,
    ];

    /// The kind a stored timeline entry names, when a transition wrote it.
    pub fn parse(s: &str) -> Option<Self> {
        TransitionKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TransitionKind::PushAccepted => "push_accepted",
            TransitionKind::PushRefused => "push_refused",
            TransitionKind::PushOutcomeUnknown => "push_outcome_unknown",
            TransitionKind::CallbackAdopted => "callback_adopted",
            TransitionKind::Callback => "callback",
            TransitionKind::Query => "query",
            TransitionKind::Expired => "expired",
            TransitionKind::AdminSettled => "admin_settled",
            TransitionKind::AdminRejected => "admin_rejected",
            TransitionKind::C2bConfirmation => "c2b_confirmation",
            TransitionKind::C2bPull => "c2b_pull",
            TransitionKind::C2bStatus => "c2b_status",
            TransitionKind::HeldForReview => "held_for_review",
        }
    }
}

/// What happens to the review flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReviewChange {
    Keep,
    Hold(ReviewReason),
    Clear,
}

/// A change to write. Fields that are `None` keep their stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub kind: TransitionKind,
    pub status: PaymentStatus,
    pub checkout_request_id: Option<String>,
    pub merchant_request_id: Option<String>,
    pub result_code: Option<ResultCode>,
    pub result_desc: Option<String>,
    pub mpesa_receipt_number: Option<String>,
    pub transaction_date_ms: Option<i64>,
    pub review: ReviewChange,
    /// Set when this transition first reaches a final state that people are told about.
    pub notify: Option<FinalOutcome>,
    /// A note for the timeline (admin notes, why a push outcome is unknown…).
    pub note: Option<String>,
}

/// The fields of a stored payment that a transition writes, borrowed from wherever the payment
/// lives (storage's row, a notification's copy of it).
pub struct PaymentFieldsMut<'a> {
    pub status: &'a mut PaymentStatus,
    pub checkout_request_id: &'a mut Option<String>,
    pub merchant_request_id: &'a mut Option<String>,
    pub result_code: &'a mut Option<String>,
    pub result_desc: &'a mut Option<String>,
    pub mpesa_receipt_number: &'a mut Option<String>,
    pub transaction_date: &'a mut Option<i64>,
    pub needs_review: &'a mut bool,
    pub review_reason: &'a mut Option<String>,
    pub finalized_at: &'a mut Option<i64>,
}

impl Transition {
    /// What this transition does to a payment written at `now`: the one definition, used by
    /// storage when it writes the row and by the notification plan when it describes the row
    /// that will be written. Fields the transition leaves `None` keep their value; the first
    /// final status sets `finalized_at`.
    pub fn apply(&self, p: PaymentFieldsMut<'_>, now: i64) {
        *p.status = self.status;
        let set = |field: &mut Option<String>, value: &Option<String>| {
            if let Some(v) = value {
                *field = Some(v.clone());
            }
        };
        set(p.checkout_request_id, &self.checkout_request_id);
        set(p.merchant_request_id, &self.merchant_request_id);
        set(
            p.result_code,
            &self.result_code.as_ref().map(|c| c.as_str().to_owned()),
        );
        set(p.result_desc, &self.result_desc);
        set(p.mpesa_receipt_number, &self.mpesa_receipt_number);
        if let Some(v) = self.transaction_date_ms {
            *p.transaction_date = Some(v);
        }
        match &self.review {
            ReviewChange::Keep => {}
            ReviewChange::Hold(reason) => {
                *p.needs_review = true;
                *p.review_reason = Some(reason.describe());
            }
            ReviewChange::Clear => {
                *p.needs_review = false;
                *p.review_reason = None;
            }
        }
        if self.status.is_final() && p.finalized_at.is_none() {
            *p.finalized_at = Some(now);
        }
    }

    pub(crate) fn new(kind: TransitionKind, status: PaymentStatus) -> Self {
        Transition {
            kind,
            status,
            checkout_request_id: None,
            merchant_request_id: None,
            result_code: None,
            result_desc: None,
            mpesa_receipt_number: None,
            transaction_date_ms: None,
            review: ReviewChange::Keep,
            notify: None,
            note: None,
        }
    }

    fn hold(kind: TransitionKind, p: &PaymentSnapshot, reason: ReviewReason) -> Self {
        let mut t = Transition::new(kind, p.status);
        t.review = ReviewChange::Hold(reason);
        t
    }

    /// Whether this transition puts the payment on hold (and an admin should be alerted).
    pub fn holds_for_review(&self) -> Option<&ReviewReason> {
        match &self.review {
            ReviewChange::Hold(r) => Some(r),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Write this transition.
    Changed(Transition),
    /// The event repeats what is already recorded: change nothing, tell no one.
    Duplicate,
    /// The event changes nothing, for the stated reason.
    Unchanged(&'static str),
}

impl Outcome {
    pub fn transition(&self) -> Option<&Transition> {
        match self {
            Outcome::Changed(t) => Some(t),
            _ => None,
        }
    }
}

/// Daraja accepted the push and gave us its ids: the prompt is on the phone.
pub fn on_push_accepted(
    p: &PaymentSnapshot,
    checkout_request_id: &str,
    merchant_request_id: &str,
) -> Outcome {
    match p.status {
        PaymentStatus::Initiated => {
            let mut t = Transition::new(TransitionKind::PushAccepted, PaymentStatus::Pending);
            t.checkout_request_id = Some(checkout_request_id.to_owned());
            t.merchant_request_id = Some(merchant_request_id.to_owned());
            Outcome::Changed(t)
        }
        _ if p.checkout_request_id.as_deref() == Some(checkout_request_id) => Outcome::Duplicate,
        // The payment moved on (e.g. expired) before Daraja's answer was recorded: keep its state
        // but record the ids, so that a late callback is matched and judged.
        _ if p.checkout_request_id.is_none() => {
            let mut t = Transition::new(TransitionKind::PushAccepted, p.status);
            t.checkout_request_id = Some(checkout_request_id.to_owned());
            t.merchant_request_id = Some(merchant_request_id.to_owned());
            Outcome::Changed(t)
        }
        _ => Outcome::Unchanged("the payment already has another CheckoutRequestID"),
    }
}

/// Daraja refused the push request (a 4xx/5xx answer with its error code): nothing was sent to
/// the phone.
pub fn on_push_refused(p: &PaymentSnapshot, error_code: &str, error_message: &str) -> Outcome {
    match p.status {
        PaymentStatus::Initiated => {
            let mut t = Transition::new(TransitionKind::PushRefused, PaymentStatus::Rejected);
            t.result_code = Some(ResultCode::new(error_code));
            t.result_desc = Some(error_message.to_owned());
            Outcome::Changed(t)
        }
        _ => Outcome::Unchanged("a refusal can only end a payment that was never accepted"),
    }
}

/// The push may or may not have reached Daraja (a timeout after sending). No second push is
/// ever sent; the payment stays `initiated` and the reconciler resolves it.
pub fn on_push_outcome_unknown(p: &PaymentSnapshot, reason: &str) -> Outcome {
    match p.status {
        PaymentStatus::Initiated => {
            let mut t =
                Transition::new(TransitionKind::PushOutcomeUnknown, PaymentStatus::Initiated);
            t.note = Some(reason.to_owned());
            Outcome::Changed(t)
        }
        _ => Outcome::Unchanged("the payment already moved on"),
    }
}

/// Why an event leaves a payment held for review as it is.
const HELD: &str = "held for review: only a person settles or rejects it";

/// Safaricom's STK callback for this payment's CheckoutRequestID.
pub fn on_callback(p: &PaymentSnapshot, cb: &CallbackReport) -> Outcome {
    let CallbackVerdict::Final(reported) = cb.result_code.callback_verdict();
    let kind = TransitionKind::Callback;
    if p.needs_review && !p.status.is_final() {
        // The callback is kept with the payment for the person deciding.
        return Outcome::Unchanged(HELD);
    }
    match (p.status, reported) {
        (PaymentStatus::Initiated | PaymentStatus::Pending, FinalOutcome::Completed) => {
            let details = match &cb.success {
                Some(d) => d,
                None => {
                    return Outcome::Changed(Transition::hold(
                        kind,
                        p,
                        ReviewReason::AmountMissing,
                    ));
                }
            };
            if let Some(reason) = success_mismatch(p, details) {
                return Outcome::Changed(Transition::hold(kind, p, reason));
            }
            let mut t = Transition::new(kind, PaymentStatus::Completed);
            fill_result(&mut t, cb);
            t.mpesa_receipt_number = Some(details.receipt.clone());
            t.transaction_date_ms = details.transaction_date_ms;
            t.notify = Some(FinalOutcome::Completed);
            Outcome::Changed(t)
        }
        (PaymentStatus::Initiated | PaymentStatus::Pending, failure) => {
            let mut t = Transition::new(kind, failure.status());
            fill_result(&mut t, cb);
            t.notify = Some(failure);
            Outcome::Changed(t)
        }
        (PaymentStatus::Completed, FinalOutcome::Completed) => {
            let Some(details) = &cb.success else {
                return Outcome::Changed(Transition::hold(kind, p, ReviewReason::AmountMissing));
            };
            match &p.mpesa_receipt_number {
                Some(receipt) if *receipt == details.receipt => Outcome::Duplicate,
                Some(_) => {
                    Outcome::Changed(Transition::hold(kind, p, ReviewReason::ReceiptMismatch))
                }
                // Completed by an STK Query, which carries no receipt: the callback that comes
                // later adds it, if it matches, without telling anyone a second time.
                None => {
                    if let Some(reason) = success_mismatch(p, details) {
                        return Outcome::Changed(Transition::hold(kind, p, reason));
                    }
                    let mut t = Transition::new(kind, PaymentStatus::Completed);
                    fill_result(&mut t, cb);
                    t.mpesa_receipt_number = Some(details.receipt.clone());
                    t.transaction_date_ms = details.transaction_date_ms;
                    Outcome::Changed(t)
                }
            }
        }
        (PaymentStatus::Completed, failure) => Outcome::Changed(Transition::hold(
            kind,
            p,
            ReviewReason::ContradictsFinalState {
                current: p.status,
                reported: failure,
            },
        )),
        (previous, FinalOutcome::Completed) => Outcome::Changed(Transition::hold(
            kind,
            p,
            ReviewReason::LateSuccess { previous },
        )),
        (_, failure) => {
            if FinalOutcome::from_status(p.status) == Some(failure)
                && p.result_code.as_ref() == Some(&cb.result_code)
            {
                Outcome::Duplicate
            } else {
                Outcome::Unchanged("a failure reported for a payment that already ended unpaid")
            }
        }
    }
}

/// A payment whose push outcome was unknown gets the ids of a callback that matched it by
/// phone and amount and that Daraja confirmed: it becomes `pending` with those ids, held for a
/// person to look at. Only an `initiated` payment without ids can be matched this way.
pub fn on_callback_adopted(
    p: &PaymentSnapshot,
    checkout_request_id: &str,
    merchant_request_id: &str,
) -> Outcome {
    if p.status != PaymentStatus::Initiated || p.checkout_request_id.is_some() {
        return Outcome::Unchanged(
            "only a payment whose push outcome is unknown can adopt a callback",
        );
    }
    let mut t = Transition::new(TransitionKind::CallbackAdopted, PaymentStatus::Pending);
    t.checkout_request_id = Some(checkout_request_id.to_owned());
    t.merchant_request_id = Some(merchant_request_id.to_owned());
    t.review = ReviewChange::Hold(ReviewReason::MatchedAfterUnknownPush);
    Outcome::Changed(t)
}

/// A success callback whose receipt number storage found on another payment: it cannot settle
/// this one. The payment keeps its state and is held for review.
pub fn on_receipt_in_use(p: &PaymentSnapshot) -> Outcome {
    Outcome::Changed(Transition::hold(
        TransitionKind::Callback,
        p,
        ReviewReason::ReceiptInUse,
    ))
}

/// The answer to an STK Query.
pub fn on_query(p: &PaymentSnapshot, q: &QueryReport) -> Outcome {
    let kind = TransitionKind::Query;
    if p.needs_review {
        // The answer is kept on the timeline for the person deciding.
        return Outcome::Unchanged(HELD);
    }
    match (p.status, q.result_code.query_verdict()) {
        (PaymentStatus::Initiated | PaymentStatus::Pending, QueryVerdict::StillProcessing) => {
            Outcome::Unchanged("M-Pesa is still processing the payment")
        }
        (PaymentStatus::Initiated | PaymentStatus::Pending, QueryVerdict::Final(outcome)) => {
            let mut t = Transition::new(kind, outcome.status());
            t.result_code = Some(q.result_code.clone());
            t.result_desc = Some(q.result_desc.clone());
            t.notify = Some(outcome);
            Outcome::Changed(t)
        }
        (PaymentStatus::Completed, QueryVerdict::Final(FinalOutcome::Completed)) => {
            Outcome::Duplicate
        }
        (PaymentStatus::Completed, _) => {
            Outcome::Unchanged("a query never downgrades a completed payment")
        }
        (previous, QueryVerdict::Final(FinalOutcome::Completed)) => Outcome::Changed(
            Transition::hold(kind, p, ReviewReason::LateSuccess { previous }),
        ),
        (_, QueryVerdict::Final(outcome))
            if FinalOutcome::from_status(p.status) == Some(outcome) =>
        {
            Outcome::Duplicate
        }
        (_, _) => Outcome::Unchanged("the payment already ended unpaid"),
    }
}

/// What the reconciler's last question to Daraja about a payment brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastQuery {
    /// Nothing to ask: the payment has no CheckoutRequestID (the push's answer never came).
    NotAsked,
    /// Daraja answered, with this verdict ("still processing" included).
    Answered(QueryVerdict),
    /// No answer: a timeout, a refused connection, or one of Daraja's own error answers
    /// (`500.003.02` "system busy", an expired token…). Money may have moved.
    Unanswered,
}

/// How long the reconciler works on a payment, counted from its creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// `PAYMENT_EXPIRES_AFTER_SECS`: a payment Daraja answered about (or that could not be
    /// asked about) with no final result by then is given up.
    pub expires_after_ms: i64,
    /// How long Daraja is asked about a payment whose queries get no answer (about as long as
    /// Daraja keeps the records STK Query reads); then a person decides.
    pub keep_asking_ms: i64,
}

impl Deadlines {
    fn expires_at(&self, p: &PaymentSnapshot) -> i64 {
        p.created_at_ms.saturating_add(self.expires_after_ms)
    }

    fn stop_asking_at(&self, p: &PaymentSnapshot) -> i64 {
        p.created_at_ms
            .saturating_add(self.keep_asking_ms.max(self.expires_after_ms))
    }
}

/// The reconciler found the payment still open at `now`, after its last question to Daraja.
/// Past `expires_after_ms`, while Daraja has no outcome for it (no answer, or "still under
/// processing", `4999`, or a code we do not know), it stays open and the reconciler keeps
/// asking; it is held for a person once `keep_asking_ms` has passed. A query has stayed at
/// `4999` for many minutes before turning into `1032`, and a paid order given up on such an
/// answer has been booked as failed: "still processing" is not an outcome to give up on. A
/// payment that could not be asked about (its push's answer never came) is held for a person at
/// once. Nobody is told "timed out" about money that may have moved: `timed_out` comes from
/// M-Pesa (`1037`, `1019`), by callback or query.
pub fn on_expiry(p: &PaymentSnapshot, now_ms: i64, d: &Deadlines, last: LastQuery) -> Outcome {
    if p.status.is_final() {
        return Outcome::Unchanged("the payment is already final");
    }
    if p.needs_review {
        return Outcome::Unchanged(HELD);
    }
    if now_ms < d.expires_at(p) {
        return Outcome::Unchanged("the payment has not expired yet");
    }
    let asked_for_hours = d.keep_asking_ms.max(d.expires_after_ms) / 3_600_000;
    match last {
        // A final answer is applied as it comes; here only if it came for a payment it could
        // not change.
        LastQuery::Answered(QueryVerdict::Final(_)) => {
            let mut t = Transition::new(TransitionKind::Expired, PaymentStatus::TimedOut);
            t.result_desc = Some(format!(
                "no final answer from M-Pesa within {} seconds",
                d.expires_after_ms / 1000
            ));
            t.notify = Some(FinalOutcome::TimedOut);
            Outcome::Changed(t)
        }
        LastQuery::Answered(QueryVerdict::StillProcessing) if now_ms < d.stop_asking_at(p) => {
            Outcome::Unchanged("M-Pesa has no outcome yet: the reconciler asks again")
        }
        LastQuery::Answered(QueryVerdict::StillProcessing) => Outcome::Changed(Transition::hold(
            TransitionKind::Expired,
            p,
            ReviewReason::NeverFinal { asked_for_hours },
        )),
        LastQuery::Unanswered if now_ms < d.stop_asking_at(p) => {
            Outcome::Unchanged("Daraja did not answer: the reconciler asks again")
        }
        LastQuery::Unanswered => Outcome::Changed(Transition::hold(
            TransitionKind::Expired,
            p,
            ReviewReason::NoAnswerFromDaraja { asked_for_hours },
        )),
        LastQuery::NotAsked => Outcome::Changed(Transition::hold(
            TransitionKind::Expired,
            p,
            ReviewReason::PushOutcomeUnknown,
        )),
    }
}

/// When the reconciler looks at an open payment again, after a check at `now` (its question
/// answered or not, and [`on_expiry`] applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextCheck {
    /// At this time exactly.
    At(i64),
    /// After the reconciler's backoff, but no later than `not_after_ms`. `slow`: past the
    /// expiry, while Daraja does not answer, ask less often.
    Backoff { not_after_ms: i64, slow: bool },
    /// Never again: the payment is final, or a person decides.
    Never,
}

/// See [`NextCheck`]. A held payment is asked about until Daraja gives a final answer (it goes on
/// the timeline for the person deciding), or until Daraja's records run out.
pub fn next_check(p: &PaymentSnapshot, now_ms: i64, d: &Deadlines, last: LastQuery) -> NextCheck {
    if p.status.is_final() {
        return NextCheck::Never;
    }
    let (expires_at, stop_at) = (d.expires_at(p), d.stop_asking_at(p));
    if p.needs_review {
        return match last {
            LastQuery::NotAsked | LastQuery::Answered(QueryVerdict::Final(_)) => NextCheck::Never,
            _ if now_ms >= stop_at => NextCheck::Never,
            _ => NextCheck::Backoff {
                not_after_ms: stop_at,
                slow: now_ms >= expires_at,
            },
        };
    }
    match last {
        // Nothing to ask: look again at the expiry (a callback may settle it before).
        LastQuery::NotAsked if now_ms < expires_at => NextCheck::At(expires_at),
        // One last question right at the expiry: a success must never be booked as timed out.
        _ if now_ms < expires_at => NextCheck::Backoff {
            not_after_ms: expires_at,
            slow: false,
        },
        // Past the expiry and still open: Daraja had no outcome for it. Ask until its records
        // run out (past that, `on_expiry` has held it; a backoff is only a safe default).
        _ => NextCheck::Backoff {
            not_after_ms: if now_ms < stop_at { stop_at } else { i64::MAX },
            slow: true,
        },
    }
}

/// An admin settles a payment held for review as paid.
pub fn on_admin_settle(p: &PaymentSnapshot, note: &str, receipt: Option<&str>) -> Outcome {
    if !p.needs_review {
        return Outcome::Unchanged("only a payment held for review can be settled by hand");
    }
    let mut t = Transition::new(TransitionKind::AdminSettled, PaymentStatus::Completed);
    t.review = ReviewChange::Clear;
    t.note = Some(note.to_owned());
    if p.mpesa_receipt_number.is_none() {
        t.mpesa_receipt_number = receipt.map(str::to_owned);
    }
    if p.status != PaymentStatus::Completed {
        t.notify = Some(FinalOutcome::Completed);
    }
    Outcome::Changed(t)
}

/// An admin rejects what held the payment: it is not paid by that report. A payment that was
/// still open ends as failed; a final one keeps its state.
pub fn on_admin_reject(p: &PaymentSnapshot, note: &str) -> Outcome {
    if !p.needs_review {
        return Outcome::Unchanged("only a payment held for review can be rejected by hand");
    }
    let status = if p.status.is_final() {
        p.status
    } else {
        PaymentStatus::Failed
    };
    let mut t = Transition::new(TransitionKind::AdminRejected, status);
    t.review = ReviewChange::Clear;
    t.note = Some(note.to_owned());
    if !p.status.is_final() {
        t.result_desc = Some("rejected by an admin after review".into());
        t.notify = Some(FinalOutcome::Failed);
    }
    Outcome::Changed(t)
}

fn fill_result(t: &mut Transition, cb: &CallbackReport) {
    t.result_code = Some(cb.result_code.clone());
    t.result_desc = Some(cb.result_desc.clone());
}

/// Why a reported success cannot be tied to the payment we asked for, if it cannot.
fn success_mismatch(p: &PaymentSnapshot, d: &SuccessDetails) -> Option<ReviewReason> {
    match d.amount {
        None => return Some(ReviewReason::AmountMissing),
        Some(cents) if !cents.equals(p.amount) => {
            return Some(ReviewReason::AmountMismatch {
                expected_cents: p.amount.cents().0,
                reported_cents: cents.0,
            });
        }
        Some(_) => {}
    }
    if let Some(reported) = &d.phone
        && p.phone
            .as_ref()
            .and_then(|ph| ph.matches_reported(reported))
            == Some(false)
    {
        return Some(ReviewReason::PhoneMismatch);
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::payment::ALL_STATUSES;
    use proptest::prelude::*;

    /// A KSh 100 payment to 0708374149, with what a payment in `status` has recorded.
    pub(crate) fn snapshot(status: PaymentStatus) -> PaymentSnapshot {
        PaymentSnapshot {
            status,
            amount: Amount::from_stored(100),
            phone: Some(Msisdn::parse("0708374149").unwrap()),
            checkout_request_id: Some("ws_CO_1".into()),
            mpesa_receipt_number: (status == PaymentStatus::Completed).then(|| "SGA1XYZ123".into()),
            result_code: match status {
                PaymentStatus::Completed => Some(ResultCode::from("0")),
                PaymentStatus::Cancelled => Some(ResultCode::from("1032")),
                PaymentStatus::Failed => Some(ResultCode::from("1")),
                PaymentStatus::TimedOut => Some(ResultCode::from("1037")),
                _ => None,
            },
            needs_review: false,
            created_at_ms: 1_000_000,
            through_link: false,
        }
    }

    pub(crate) fn success(amount_cents: i64, phone: &str, receipt: &str) -> CallbackReport {
        CallbackReport {
            result_code: ResultCode::from("0"),
            result_desc: "The service request is processed successfully.".into(),
            success: Some(SuccessDetails {
                receipt: receipt.into(),
                amount: Some(Cents(amount_cents)),
                phone: Some(phone.into()),
                transaction_date_ms: Some(1_720_592_141_000),
            }),
        }
    }

    pub(crate) fn failure(code: &str) -> CallbackReport {
        CallbackReport {
            result_code: ResultCode::from(code),
            result_desc: "x".into(),
            success: None,
        }
    }

    fn query(code: &str) -> QueryReport {
        QueryReport {
            result_code: ResultCode::from(code),
            result_desc: "x".into(),
        }
    }

    fn changed(o: Outcome) -> Transition {
        match o {
            Outcome::Changed(t) => t,
            other => panic!("expected a change, got {other:?}"),
        }
    }

    /// The fields of a stored payment, owned (what storage's row holds).
    #[derive(Debug, PartialEq)]
    struct Row {
        status: PaymentStatus,
        checkout: Option<String>,
        merchant: Option<String>,
        code: Option<String>,
        desc: Option<String>,
        receipt: Option<String>,
        date: Option<i64>,
        review: bool,
        reason: Option<String>,
        finalized: Option<i64>,
    }

    impl Row {
        fn fields(&mut self) -> PaymentFieldsMut<'_> {
            PaymentFieldsMut {
                status: &mut self.status,
                checkout_request_id: &mut self.checkout,
                merchant_request_id: &mut self.merchant,
                result_code: &mut self.code,
                result_desc: &mut self.desc,
                mpesa_receipt_number: &mut self.receipt,
                transaction_date: &mut self.date,
                needs_review: &mut self.review,
                review_reason: &mut self.reason,
                finalized_at: &mut self.finalized,
            }
        }
    }

    #[test]
    fn a_transition_writes_what_it_carries_and_keeps_the_rest() {
        let mut row = Row {
            status: PaymentStatus::Pending,
            checkout: Some("ws_CO_1".into()),
            merchant: Some("m-1".into()),
            code: None,
            desc: None,
            receipt: None,
            date: None,
            review: false,
            reason: None,
            finalized: None,
        };
        let t = changed(on_callback(
            &snapshot(PaymentStatus::Pending),
            &success(10_000, "254708374149", "SGA1XYZ123"),
        ));
        t.apply(row.fields(), 5_000);
        assert_eq!(row.status, PaymentStatus::Completed);
        assert_eq!(
            row.checkout.as_deref(),
            Some("ws_CO_1"),
            "kept: not carried"
        );
        assert_eq!(row.merchant.as_deref(), Some("m-1"));
        assert_eq!(row.code.as_deref(), Some("0"));
        assert_eq!(row.receipt.as_deref(), Some("SGA1XYZ123"));
        assert_eq!(row.date, Some(1_720_592_141_000));
        assert_eq!(row.finalized, Some(5_000), "the first final status sets it");
        // A later change (an admin's note on a final payment) never moves finalized_at.
        let mut later = Transition::new(TransitionKind::AdminSettled, PaymentStatus::Completed);
        later.review = ReviewChange::Hold(ReviewReason::ReceiptInUse);
        later.apply(row.fields(), 9_000);
        assert_eq!(row.finalized, Some(5_000));
        assert!(row.review);
        assert_eq!(row.reason, Some(ReviewReason::ReceiptInUse.describe()));
        let mut cleared = Transition::new(TransitionKind::AdminSettled, PaymentStatus::Completed);
        cleared.review = ReviewChange::Clear;
        cleared.apply(row.fields(), 9_500);
        assert_eq!((row.review, row.reason.as_deref()), (false, None));
    }

    #[test]
    fn timeline_names_are_the_stored_ones_and_read_back() {
        let names: Vec<_> = TransitionKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "push_accepted",
                "push_refused",
                "push_outcome_unknown",
                "callback_adopted",
                "callback",
                "query",
                "expired",
                "admin_settled",
                "admin_rejected",
                "c2b_confirmation",
                "c2b_pull",
                "c2b_status",
                "held_for_review",
            ],
            "old rows and dashboards read these names"
        );
        for k in TransitionKind::ALL {
            assert_eq!(TransitionKind::parse(k.as_str()), Some(k));
            // serde's name is the stored one too.
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                serde_json::Value::from(k.as_str())
            );
        }
        assert_eq!(TransitionKind::parse("created"), None);
    }

    #[test]
    fn push_accepted_moves_initiated_to_pending() {
        let mut p = snapshot(PaymentStatus::Initiated);
        p.checkout_request_id = None;
        let t = changed(on_push_accepted(&p, "ws_CO_9", "m-1"));
        assert_eq!(t.status, PaymentStatus::Pending);
        assert_eq!(t.checkout_request_id.as_deref(), Some("ws_CO_9"));
        assert_eq!(t.notify, None);
        // The same answer recorded twice is a duplicate.
        let p = snapshot(PaymentStatus::Pending);
        assert_eq!(on_push_accepted(&p, "ws_CO_1", "m-1"), Outcome::Duplicate);
        assert!(matches!(
            on_push_accepted(&p, "ws_CO_2", "m-1"),
            Outcome::Unchanged(_)
        ));
    }

    #[test]
    fn push_accepted_after_expiry_records_ids_only() {
        let mut p = snapshot(PaymentStatus::TimedOut);
        p.checkout_request_id = None;
        let t = changed(on_push_accepted(&p, "ws_CO_9", "m-1"));
        assert_eq!(t.status, PaymentStatus::TimedOut);
        assert_eq!(t.notify, None);
    }

    #[test]
    fn push_refused_rejects_only_initiated() {
        let t = changed(on_push_refused(
            &snapshot(PaymentStatus::Initiated),
            "400.002.02",
            "Bad Request - Invalid PhoneNumber",
        ));
        assert_eq!(t.status, PaymentStatus::Rejected);
        assert_eq!(t.result_code.unwrap().as_str(), "400.002.02");
        assert_eq!(t.notify, None);
        assert!(matches!(
            on_push_refused(&snapshot(PaymentStatus::Pending), "x", "y"),
            Outcome::Unchanged(_)
        ));
    }

    #[test]
    fn push_outcome_unknown_keeps_initiated() {
        let t = changed(on_push_outcome_unknown(
            &snapshot(PaymentStatus::Initiated),
            "timeout after sending",
        ));
        assert_eq!(t.status, PaymentStatus::Initiated);
        assert_eq!(t.note.as_deref(), Some("timeout after sending"));
        assert!(matches!(
            on_push_outcome_unknown(&snapshot(PaymentStatus::Pending), "x"),
            Outcome::Unchanged(_)
        ));
    }

    #[test]
    fn matching_success_completes_and_notifies_once() {
        let p = snapshot(PaymentStatus::Pending);
        let cb = success(10_000, "254708374149", "SGA1XYZ123");
        let t = changed(on_callback(&p, &cb));
        assert_eq!(t.status, PaymentStatus::Completed);
        assert_eq!(t.notify, Some(FinalOutcome::Completed));
        assert_eq!(t.mpesa_receipt_number.as_deref(), Some("SGA1XYZ123"));
        assert_eq!(t.review, ReviewChange::Keep);
        // The same callback again, now that the payment is completed: nothing.
        assert_eq!(
            on_callback(&snapshot(PaymentStatus::Completed), &cb),
            Outcome::Duplicate
        );
    }

    #[test]
    fn success_for_another_amount_is_held_not_settled() {
        let p = snapshot(PaymentStatus::Pending);
        let t = changed(on_callback(&p, &success(100, "254708374149", "R1")));
        assert_eq!(t.status, PaymentStatus::Pending);
        assert_eq!(t.notify, None);
        assert_eq!(
            t.review,
            ReviewChange::Hold(ReviewReason::AmountMismatch {
                expected_cents: 10_000,
                reported_cents: 100
            })
        );
    }

    #[test]
    fn success_from_another_phone_is_held() {
        let t = changed(on_callback(
            &snapshot(PaymentStatus::Pending),
            &success(10_000, "254711111111", "R1"),
        ));
        assert_eq!(t.status, PaymentStatus::Pending);
        assert_eq!(t.review, ReviewChange::Hold(ReviewReason::PhoneMismatch));
        // A masked number that fits, or none at all, does not hold the payment.
        let t = changed(on_callback(
            &snapshot(PaymentStatus::Pending),
            &success(10_000, "2547 ***** 149", "R1"),
        ));
        assert_eq!(t.status, PaymentStatus::Completed);
    }

    #[test]
    fn success_without_amount_is_held() {
        let mut cb = success(10_000, "254708374149", "R1");
        cb.success.as_mut().unwrap().amount = None;
        let t = changed(on_callback(&snapshot(PaymentStatus::Pending), &cb));
        assert_eq!(t.review, ReviewChange::Hold(ReviewReason::AmountMissing));
        assert_eq!(t.status, PaymentStatus::Pending);
    }

    #[test]
    fn failures_map_to_their_states() {
        for (code, status) in [
            ("1", PaymentStatus::Failed),
            ("2001", PaymentStatus::Failed),
            ("1032", PaymentStatus::Cancelled),
            ("1037", PaymentStatus::TimedOut),
            ("SFC_IC0003", PaymentStatus::Failed),
            ("777", PaymentStatus::Failed),
        ] {
            let t = changed(on_callback(
                &snapshot(PaymentStatus::Pending),
                &failure(code),
            ));
            assert_eq!(t.status, status, "{code}");
            assert_eq!(t.notify, FinalOutcome::from_status(status));
            assert_eq!(t.result_code.unwrap().as_str(), code);
        }
    }

    #[test]
    fn a_failure_after_completion_is_held_and_keeps_completed() {
        let t = changed(on_callback(
            &snapshot(PaymentStatus::Completed),
            &failure("1032"),
        ));
        assert_eq!(t.status, PaymentStatus::Completed);
        assert_eq!(t.notify, None);
        assert!(matches!(
            t.review,
            ReviewChange::Hold(ReviewReason::ContradictsFinalState { .. })
        ));
    }

    #[test]
    fn a_second_success_with_another_receipt_is_held() {
        let t = changed(on_callback(
            &snapshot(PaymentStatus::Completed),
            &success(10_000, "254708374149", "OTHER00001"),
        ));
        assert_eq!(t.review, ReviewChange::Hold(ReviewReason::ReceiptMismatch));
        assert_eq!(t.notify, None);
    }

    #[test]
    fn a_late_success_after_giving_up_is_held() {
        for status in [
            PaymentStatus::TimedOut,
            PaymentStatus::Cancelled,
            PaymentStatus::Failed,
            PaymentStatus::Rejected,
        ] {
            let t = changed(on_callback(
                &snapshot(status),
                &success(10_000, "254708374149", "R1"),
            ));
            assert_eq!(t.status, status);
            assert_eq!(
                t.review,
                ReviewChange::Hold(ReviewReason::LateSuccess { previous: status })
            );
            assert_eq!(t.notify, None);
        }
    }

    #[test]
    fn a_repeated_failure_is_a_duplicate() {
        assert_eq!(
            on_callback(&snapshot(PaymentStatus::Cancelled), &failure("1032")),
            Outcome::Duplicate
        );
        assert!(matches!(
            on_callback(&snapshot(PaymentStatus::Cancelled), &failure("1")),
            Outcome::Unchanged(_)
        ));
    }

    #[test]
    fn callback_adds_the_receipt_to_a_payment_completed_by_query() {
        let mut p = snapshot(PaymentStatus::Completed);
        p.mpesa_receipt_number = None;
        let t = changed(on_callback(
            &p,
            &success(10_000, "254708374149", "SGA1XYZ123"),
        ));
        assert_eq!(t.status, PaymentStatus::Completed);
        assert_eq!(t.mpesa_receipt_number.as_deref(), Some("SGA1XYZ123"));
        assert_eq!(t.notify, None, "nobody is told twice");
        let t = changed(on_callback(&p, &success(500, "254708374149", "SGA1XYZ123")));
        assert!(matches!(
            t.review,
            ReviewChange::Hold(ReviewReason::AmountMismatch { .. })
        ));
    }

    #[test]
    fn only_a_payment_with_an_unknown_push_outcome_adopts_a_callback() {
        let mut p = snapshot(PaymentStatus::Initiated);
        p.checkout_request_id = None;
        let t = changed(on_callback_adopted(&p, "ws_CO_7", "m-7"));
        // Its own kind, which names the timeline entry (it was written as `push_accepted`).
        assert_eq!(t.kind.as_str(), "callback_adopted");
        assert_eq!(t.status, PaymentStatus::Pending);
        assert_eq!(t.checkout_request_id.as_deref(), Some("ws_CO_7"));
        assert_eq!(
            t.review,
            ReviewChange::Hold(ReviewReason::MatchedAfterUnknownPush)
        );
        assert_eq!(t.notify, None);
        assert!(matches!(
            on_callback_adopted(&snapshot(PaymentStatus::Initiated), "x", "y"),
            Outcome::Unchanged(_)
        ));
        assert!(matches!(
            on_callback_adopted(&snapshot(PaymentStatus::Pending), "x", "y"),
            Outcome::Unchanged(_)
        ));
    }

    #[test]
    fn a_receipt_of_another_payment_holds_without_changing_state() {
        for status in [PaymentStatus::Pending, PaymentStatus::Completed] {
            let t = changed(on_receipt_in_use(&snapshot(status)));
            assert_eq!(t.status, status);
            assert_eq!(t.review, ReviewChange::Hold(ReviewReason::ReceiptInUse));
            assert_eq!(t.notify, None);
            assert_eq!(t.mpesa_receipt_number, None);
        }
    }

    #[test]
    fn query_settles_open_payments_and_waits_on_unknown_codes() {
        let p = snapshot(PaymentStatus::Pending);
        assert!(matches!(
            on_query(&p, &query("4999")),
            Outcome::Unchanged(_)
        ));
        assert!(matches!(
            on_query(&p, &query("123456")),
            Outcome::Unchanged(_)
        ));
        let t = changed(on_query(&p, &query("0")));
        assert_eq!(t.status, PaymentStatus::Completed);
        assert_eq!(t.notify, Some(FinalOutcome::Completed));
        assert_eq!(t.mpesa_receipt_number, None);
        let t = changed(on_query(&p, &query("1032")));
        assert_eq!(t.status, PaymentStatus::Cancelled);
    }

    #[test]
    fn query_never_downgrades_a_completed_payment() {
        let p = snapshot(PaymentStatus::Completed);
        for code in ["1", "1032", "1037", "2001", "4999"] {
            assert!(
                matches!(on_query(&p, &query(code)), Outcome::Unchanged(_)),
                "{code}"
            );
        }
        assert_eq!(on_query(&p, &query("0")), Outcome::Duplicate);
    }

    #[test]
    fn query_success_after_giving_up_is_held() {
        let t = changed(on_query(&snapshot(PaymentStatus::TimedOut), &query("0")));
        assert_eq!(t.status, PaymentStatus::TimedOut);
        assert!(matches!(
            t.review,
            ReviewChange::Hold(ReviewReason::LateSuccess { .. })
        ));
    }

    const DEADLINES: Deadlines = Deadlines {
        expires_after_ms: 300_000,
        keep_asking_ms: 86_400_000,
    };
    const STILL: LastQuery = LastQuery::Answered(QueryVerdict::StillProcessing);

    /// "Still under processing" at the expiry is no outcome: a query has turned from `4999`
    /// into `1032` many minutes on, and a paid order given up on it was booked as failed. The
    /// payment stays open and is asked about until Daraja's records run out, then held; it is
    /// never "timed out" on it.
    #[test]
    fn still_processing_at_expiry_keeps_asking_then_holds_never_times_out() {
        let p = snapshot(PaymentStatus::Pending);
        assert!(matches!(
            on_expiry(&p, 1_000_000 + 299_999, &DEADLINES, STILL),
            Outcome::Unchanged(_)
        ));
        let at_expiry = 1_000_000 + 300_000;
        assert!(
            matches!(
                on_expiry(&p, at_expiry, &DEADLINES, STILL),
                Outcome::Unchanged(_)
            ),
            "still open: the reconciler asks again"
        );
        assert_eq!(
            next_check(&p, at_expiry, &DEADLINES, STILL),
            NextCheck::Backoff {
                not_after_ms: 1_000_000 + 86_400_000,
                slow: true
            }
        );
        let t = changed(on_expiry(&p, 1_000_000 + 86_400_000, &DEADLINES, STILL));
        assert_eq!(t.status, PaymentStatus::Pending, "never timed out");
        assert_eq!(t.notify, None, "the merchant is told nothing");
        assert_eq!(
            t.review,
            ReviewChange::Hold(ReviewReason::NeverFinal {
                asked_for_hours: 24
            })
        );
        assert!(matches!(
            on_expiry(
                &snapshot(PaymentStatus::Completed),
                i64::MAX,
                &DEADLINES,
                STILL
            ),
            Outcome::Unchanged(_)
        ));
    }

    /// Issue: a paid payment was booked `timed_out` because STK Query failed at expiry.
    #[test]
    fn unanswered_queries_never_time_out_a_payment_they_hold_it_once_daraja_forgets() {
        let p = snapshot(PaymentStatus::Pending);
        let at_expiry = 1_000_000 + 300_000;
        assert!(
            matches!(
                on_expiry(&p, at_expiry, &DEADLINES, LastQuery::Unanswered),
                Outcome::Unchanged(_)
            ),
            "still open: the reconciler asks again"
        );
        assert_eq!(
            next_check(&p, at_expiry, &DEADLINES, LastQuery::Unanswered),
            NextCheck::Backoff {
                not_after_ms: 1_000_000 + 86_400_000,
                slow: true
            }
        );
        let t = changed(on_expiry(
            &p,
            1_000_000 + 86_400_000,
            &DEADLINES,
            LastQuery::Unanswered,
        ));
        assert_eq!(t.status, PaymentStatus::Pending, "never timed out");
        assert_eq!(t.notify, None, "the merchant is told nothing");
        assert_eq!(
            t.review,
            ReviewChange::Hold(ReviewReason::NoAnswerFromDaraja {
                asked_for_hours: 24
            })
        );
        let mut held = p.clone();
        held.needs_review = true;
        assert_eq!(
            next_check(
                &held,
                1_000_000 + 86_400_000,
                &DEADLINES,
                LastQuery::Unanswered
            ),
            NextCheck::Never,
            "Daraja's records are gone: a person decides"
        );
    }

    /// A push whose answer never came cannot be asked about: held, never "timed out".
    #[test]
    fn a_payment_that_could_not_be_asked_about_is_held_at_expiry() {
        let mut p = snapshot(PaymentStatus::Initiated);
        p.checkout_request_id = None;
        assert_eq!(
            next_check(&p, 1_000_000, &DEADLINES, LastQuery::NotAsked),
            NextCheck::At(1_300_000)
        );
        let t = changed(on_expiry(&p, 1_300_000, &DEADLINES, LastQuery::NotAsked));
        assert_eq!(t.status, PaymentStatus::Initiated);
        assert_eq!(t.notify, None);
        assert_eq!(
            t.review,
            ReviewChange::Hold(ReviewReason::PushOutcomeUnknown)
        );
    }

    #[test]
    fn before_expiry_the_last_question_comes_right_at_it() {
        let p = snapshot(PaymentStatus::Pending);
        for last in [STILL, LastQuery::Unanswered] {
            assert_eq!(
                next_check(&p, 1_000_000 + 60_000, &DEADLINES, last),
                NextCheck::Backoff {
                    not_after_ms: 1_300_000,
                    slow: false
                }
            );
        }
        assert_eq!(
            next_check(&snapshot(PaymentStatus::Completed), 0, &DEADLINES, STILL),
            NextCheck::Never
        );
    }

    /// Issue: a held payment was completed by the next reconciler pass, and Reject left it
    /// completed.
    #[test]
    fn a_held_open_payment_is_decided_by_a_person_only() {
        let mut held = snapshot(PaymentStatus::Pending);
        held.needs_review = true;
        for code in ["0", "1", "1032", "1037", "4999"] {
            assert_eq!(
                on_query(&held, &query(code)),
                Outcome::Unchanged(HELD),
                "query {code}"
            );
        }
        assert_eq!(
            on_callback(&held, &success(10_000, "254708374149", "R1")),
            Outcome::Unchanged(HELD)
        );
        assert_eq!(
            on_callback(&held, &failure("1032")),
            Outcome::Unchanged(HELD)
        );
        for last in [STILL, LastQuery::Unanswered, LastQuery::NotAsked] {
            assert_eq!(
                on_expiry(&held, i64::MAX / 2, &DEADLINES, last),
                Outcome::Unchanged(HELD)
            );
        }
        // Daraja keeps being asked until it gives a final answer, for the person to read.
        let final_answer = LastQuery::Answered(QueryVerdict::Final(FinalOutcome::Completed));
        assert_eq!(
            next_check(&held, 1_000_000, &DEADLINES, final_answer),
            NextCheck::Never
        );
        assert!(matches!(
            next_check(&held, 1_000_000, &DEADLINES, STILL),
            NextCheck::Backoff { .. }
        ));
        // The person's decision ends it, and is told once.
        let t = changed(on_admin_reject(&held, "not ours"));
        assert_ne!(t.status, PaymentStatus::Completed);
        assert!(t.status.is_final());
        assert_eq!(t.notify, Some(FinalOutcome::Failed));
        let t = changed(on_admin_settle(&held, "on the statement", Some("R1")));
        assert_eq!(t.status, PaymentStatus::Completed);
        assert_eq!(t.notify, Some(FinalOutcome::Completed));
    }

    #[test]
    fn admin_settles_and_rejects_only_held_payments() {
        let p = snapshot(PaymentStatus::Pending);
        assert!(matches!(
            on_admin_settle(&p, "ok", None),
            Outcome::Unchanged(_)
        ));
        let mut held = p.clone();
        held.needs_review = true;
        let t = changed(on_admin_settle(
            &held,
            "checked the statement",
            Some("SGA1XYZ123"),
        ));
        assert_eq!(t.status, PaymentStatus::Completed);
        assert_eq!(t.review, ReviewChange::Clear);
        assert_eq!(t.notify, Some(FinalOutcome::Completed));
        let t = changed(on_admin_reject(&held, "forged"));
        assert_eq!(t.status, PaymentStatus::Failed);
        assert_eq!(t.notify, Some(FinalOutcome::Failed));
        let mut held_completed = snapshot(PaymentStatus::Completed);
        held_completed.needs_review = true;
        let t = changed(on_admin_reject(
            &held_completed,
            "the odd callback was noise",
        ));
        assert_eq!(t.status, PaymentStatus::Completed);
        assert_eq!(t.notify, None);
        let t = changed(on_admin_settle(&held_completed, "fine", None));
        assert_eq!(t.notify, None, "already completed: nobody is told twice");
    }

    fn any_status() -> impl Strategy<Value = PaymentStatus> {
        prop::sample::select(ALL_STATUSES.to_vec())
    }

    fn any_code() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "0",
            "1",
            "17",
            "1001",
            "1019",
            "1032",
            "1037",
            "2001",
            "4999",
            "SFC_IC0003",
            "99",
        ])
        .prop_map(str::to_owned)
    }

    fn any_callback() -> impl Strategy<Value = CallbackReport> {
        (
            any_code(),
            prop::option::of(0i64..20_000),
            prop::bool::ANY,
            "[A-Z0-9]{10}",
        )
            .prop_map(|(code, amount, same_phone, receipt)| {
                let ok = code == "0";
                CallbackReport {
                    result_code: ResultCode::from(code.as_str()),
                    result_desc: "x".into(),
                    success: ok.then(|| SuccessDetails {
                        receipt,
                        amount: amount.map(Cents),
                        phone: Some(
                            if same_phone {
                                "254708374149"
                            } else {
                                "254711000000"
                            }
                            .into(),
                        ),
                        transaction_date_ms: None,
                    }),
                }
            })
    }

    proptest! {
        /// Final states are absorbing for everything but an admin's decision.
        #[test]
        fn final_states_never_change_by_events(status in any_status(), cb in any_callback(), code in any_code(), now in 0i64..i64::MAX / 2) {
            prop_assume!(status.is_final());
            let p = snapshot(status);
            let d = Deadlines { expires_after_ms: 1, keep_asking_ms: 1 };
            for outcome in [on_callback(&p, &cb), on_query(&p, &query(&code)), on_expiry(&p, now, &d, STILL),
                            on_expiry(&p, now, &d, LastQuery::Unanswered), on_expiry(&p, now, &d, LastQuery::NotAsked),
                            on_push_refused(&p, "500", "x"), on_push_outcome_unknown(&p, "x")] {
                if let Outcome::Changed(t) = outcome {
                    prop_assert_eq!(t.status, status);
                    prop_assert_eq!(t.notify, None);
                }
            }
        }

        /// Whoever reaches a final state, people are told exactly then, and about that state.
        #[test]
        fn notify_iff_first_final_state(status in any_status(), cb in any_callback(), code in any_code()) {
            let p = snapshot(status);
            for outcome in [on_callback(&p, &cb), on_query(&p, &query(&code))] {
                if let Outcome::Changed(t) = outcome {
                    let newly_final = !status.is_final() && t.status.is_final();
                    prop_assert_eq!(t.notify.is_some(), newly_final);
                    if let Some(n) = t.notify { prop_assert_eq!(n.status(), t.status); }
                }
            }
        }

        /// Nothing but a matching success (or a query saying so) completes a payment.
        #[test]
        fn completion_needs_a_matching_success(status in any_status(), cb in any_callback()) {
            let p = snapshot(status);
            if let Outcome::Changed(t) = on_callback(&p, &cb)
                && t.status == PaymentStatus::Completed && status != PaymentStatus::Completed {
                    let d = cb.success.as_ref().unwrap();
                    prop_assert_eq!(d.amount, Some(Cents(10_000)));
                    prop_assert_eq!(d.phone.as_deref(), Some("254708374149"));
                    prop_assert!(t.mpesa_receipt_number.is_some());
            }
        }

        /// A payment held for review is never finalised nor notified by any event but a
        /// person's decision.
        #[test]
        fn held_payments_are_never_finalised_by_events(status in any_status(), cb in any_callback(), code in any_code(), now in 0i64..i64::MAX / 2) {
            let mut p = snapshot(status);
            p.needs_review = true;
            let d = Deadlines { expires_after_ms: 1, keep_asking_ms: 1 };
            for outcome in [on_callback(&p, &cb), on_query(&p, &query(&code)), on_expiry(&p, now, &d, STILL),
                            on_expiry(&p, now, &d, LastQuery::Unanswered), on_expiry(&p, now, &d, LastQuery::NotAsked)] {
                if let Outcome::Changed(t) = outcome {
                    prop_assert_eq!(t.status, status);
                    prop_assert_eq!(t.notify, None);
                }
            }
        }

        /// Nobody is told "timed out" unless Daraja answered, or could not be asked.
        #[test]
        fn timed_out_only_after_an_answer(status in any_status(), now in 0i64..i64::MAX / 2) {
            let p = snapshot(status);
            let d = Deadlines { expires_after_ms: 1, keep_asking_ms: 2 };
            if let Outcome::Changed(t) = on_expiry(&p, now, &d, LastQuery::Unanswered) {
                prop_assert_ne!(t.status, PaymentStatus::TimedOut);
                prop_assert_eq!(t.notify, None);
            }
            if let Outcome::Changed(t) = on_expiry(&p, now, &d, LastQuery::NotAsked) {
                prop_assert_eq!(t.notify, None);
            }
        }

        /// Applying the same callback twice never does anything the second time.
        #[test]
        fn applying_a_callback_twice_is_a_no_op(cb in any_callback()) {
            let mut p = snapshot(PaymentStatus::Pending);
            if let Outcome::Changed(t) = on_callback(&p, &cb) {
                p.status = t.status;
                if let Some(r) = t.mpesa_receipt_number { p.mpesa_receipt_number = Some(r); }
                if let Some(c) = t.result_code { p.result_code = Some(c); }
                if let ReviewChange::Hold(_) = t.review { p.needs_review = true; }
                match on_callback(&p, &cb) {
                    Outcome::Changed(t2) => {
                        prop_assert_eq!(t2.notify, None);
                        prop_assert_eq!(t2.status, p.status);
                    }
                    Outcome::Duplicate | Outcome::Unchanged(_) => {}
                }
            }
        }
    }
}

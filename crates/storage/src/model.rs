//! Records as stored. Times are Unix milliseconds; amounts are whole shillings unless the name
//! says cents; ids are text with a prefix (`pay_`, `cb_`, `evt_`, `key_`…).

use mpesa_domain::decision::{CallbackClass, PaymentChange};
use mpesa_domain::{
    Amount, Lang, LinkStatus, Msisdn, PaymentSnapshot, PaymentStatus, ResultCode, Transition,
    TransitionKind,
};
use serde::{Deserialize, Serialize};

use crate::Millis;

// ---- payments ------------------------------------------------------------------------------

/// Where a payment was started from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentSource {
    Api,
    Telegram,
    Dashboard,
    /// Nobody here started it: the customer paid the paybill or till (C2B).
    Customer,
    /// The public pay page of a payment link.
    PayPage,
}

impl PaymentSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentSource::Api => "api",
            PaymentSource::Telegram => "telegram",
            PaymentSource::Dashboard => "dashboard",
            PaymentSource::Customer => "customer",
            PaymentSource::PayPage => "pay_page",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "api" => Some(PaymentSource::Api),
            "telegram" => Some(PaymentSource::Telegram),
            "dashboard" => Some(PaymentSource::Dashboard),
            "customer" => Some(PaymentSource::Customer),
            "pay_page" => Some(PaymentSource::PayPage),
            _ => None,
        }
    }
}

/// How the money came: we asked the phone (STK Push), or the customer paid the paybill or till
/// on their own (C2B).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentChannel {
    #[default]
    Stk,
    C2b,
}

impl PaymentChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentChannel::Stk => "stk",
            PaymentChannel::C2b => "c2b",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Stk, Self::C2b].into_iter().find(|c| c.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewPayment {
    pub id: String,
    pub phone: Msisdn,
    pub amount: Amount,
    /// The AccountReference sent to Daraja.
    pub reference: String,
    /// The merchant's own description (the TransactionDesc sent is derived from it).
    pub description: String,
    pub customer_email: Option<String>,
    pub telegram_chat_id: Option<i64>,
    /// Merchant metadata, a JSON object as text.
    pub metadata: Option<String>,
    pub api_key_id: Option<String>,
    pub source: PaymentSource,
    pub created_at: Millis,
    /// When the reconciler first looks at it if nothing else happened.
    pub next_check_at: Millis,
    /// The payment link it was made through (`pl_…`).
    pub payment_link_id: Option<String>,
    /// The language the customer chose (the pay page), for their receipts. Not metadata: that
    /// is the merchant's to write.
    pub customer_language: Option<mpesa_domain::Lang>,
    /// Rules checked in the transaction that stores it (see [`StartRules`]).
    pub rules: StartRules,
}

/// What must hold for a new payment to be stored, checked in the transaction that stores it,
/// so that instances sharing the database check them together. Nothing is written when one
/// fails.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartRules {
    /// One open prompt per phone: refused while another payment to the phone is `initiated`
    /// or `pending` (whichever door made it). Starts to one phone are serialised on a row of
    /// `rate_limits` (`prompt:<phone>`), which every such start writes: a second instance
    /// waits for the first's commit (or, on Galera, fails certification and runs again), then
    /// sees its payment.
    pub one_open_per_phone: bool,
    /// For a payment through a single-use link: refused once the link is paid, and while
    /// another payment through it, started in the last three minutes, is `initiated` or
    /// `pending` (a prompt to another phone, which could be paid too). Serialised on a row of
    /// `rate_limits` (`prompt-link:<link>`).
    pub one_open_per_link: bool,
    /// Counted one hit each when the payment is stored; when one is full nothing is stored.
    pub limits: Vec<RateLimit>,
}

/// A payment as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Payment {
    pub id: String,
    pub status: PaymentStatus,
    /// The phone the prompt went to; for a C2B payment, the payer's number when Safaricom gave
    /// it whole or its hash matched a phone we know, else `None` (never a guess).
    pub phone: Option<Msisdn>,
    pub amount: Amount,
    pub reference: String,
    pub description: String,
    pub customer_email: Option<String>,
    pub telegram_chat_id: Option<i64>,
    pub metadata: Option<String>,
    pub checkout_request_id: Option<String>,
    pub merchant_request_id: Option<String>,
    pub mpesa_receipt_number: Option<String>,
    pub result_code: Option<String>,
    pub result_desc: Option<String>,
    /// M-Pesa's TransactionDate, converted to Unix ms.
    pub transaction_date: Option<Millis>,
    pub needs_review: bool,
    pub review_reason: Option<String>,
    pub api_key_id: Option<String>,
    pub source: PaymentSource,
    /// Reconciler bookkeeping: how many STK Queries were made, and when to look next.
    pub query_attempts: i32,
    pub next_check_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// When the payment first reached a final state.
    pub finalized_at: Option<Millis>,
    /// Optimistic-lock counter, incremented by every write.
    pub version: i64,
    /// The payment link it was made through (`pl_…`).
    pub payment_link_id: Option<String>,
    /// The language the customer chose on the pay page (`customer_language`), for receipts.
    pub customer_language: Option<mpesa_domain::Lang>,
    pub channel: PaymentChannel,
    /// The shortcode or till paid (C2B `BusinessShortCode`).
    pub business_short_code: Option<String>,
    /// The payer's first name as Safaricom reported it (C2B).
    pub payer_name: Option<String>,
    /// The C2B MSISDN exactly as given: a number, a SHA-256 hex digest, or masked.
    pub payer_msisdn: Option<String>,
    /// `pull` or `status` when a recovery booked it (its confirmation never came).
    pub recovered_by: Option<String>,
}

impl Payment {
    /// The fields a transition writes (`Transition::apply`).
    pub fn fields_mut(&mut self) -> mpesa_domain::PaymentFieldsMut<'_> {
        mpesa_domain::PaymentFieldsMut {
            status: &mut self.status,
            checkout_request_id: &mut self.checkout_request_id,
            merchant_request_id: &mut self.merchant_request_id,
            result_code: &mut self.result_code,
            result_desc: &mut self.result_desc,
            mpesa_receipt_number: &mut self.mpesa_receipt_number,
            transaction_date: &mut self.transaction_date,
            needs_review: &mut self.needs_review,
            review_reason: &mut self.review_reason,
            finalized_at: &mut self.finalized_at,
        }
    }

    pub fn snapshot(&self) -> PaymentSnapshot {
        PaymentSnapshot {
            status: self.status,
            amount: self.amount,
            phone: self.phone.clone(),
            checkout_request_id: self.checkout_request_id.clone(),
            mpesa_receipt_number: self.mpesa_receipt_number.clone(),
            result_code: self.result_code.as_deref().map(ResultCode::new),
            needs_review: self.needs_review,
            created_at_ms: self.created_at,
            through_link: self.payment_link_id.is_some(),
        }
    }

    /// Who paid, as text to show: the phone, else (C2B) the MSISDN as Safaricom gave it.
    pub fn payer(&self) -> String {
        self.phone
            .as_ref()
            .map(|m| m.as_str().to_owned())
            .or_else(|| self.payer_msisdn.clone())
            .unwrap_or_default()
    }

    /// `completed_at` of the API: when it completed, if it did.
    pub fn completed_at(&self) -> Option<Millis> {
        (self.status == PaymentStatus::Completed)
            .then_some(self.finalized_at)
            .flatten()
    }
}

/// What a payment event writes. Storage applies it as given: the transition's fields (those
/// that are `Some`), the review change, `finalized_at` when a final state is first reached,
/// `updated_at = now`, `version + 1`; then the timeline entry and the outbox rows.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentUpdate {
    /// `None` when the state does not change but something is still recorded (e.g. a query that
    /// answered "still processing": its timeline entry and the next check time).
    pub transition: Option<Transition>,
    pub schedule: CheckSchedule,
    /// Count this as one more STK Query made.
    pub count_query: bool,
    /// The detail (a JSON object as text) of the timeline entry this update writes, if it writes
    /// one. The entry is named by the transition (`TransitionKind::as_str`), or, in an update
    /// that changes nothing, by `observed`: see [`PaymentUpdate::timeline_entry`].
    pub event: Option<String>,
    /// What an update without a transition observed, naming its timeline entry (an STK Query
    /// answered "still processing", or not answered). A transition names its own.
    pub observed: Option<TransitionKind>,
    pub outbox: Vec<NewOutboxEvent>,
    /// Written *instead of* `outbox` when this update completes a payment made through a
    /// single-use link that another payment had already paid (storage decides, with the link's
    /// row locked): the payment is held for review, and what people hear says so, not that it
    /// completed. `mpesa_domain::link::PAID_BY_MARK` in a payload becomes the id of the
    /// payment that paid the link.
    pub if_link_already_paid: Vec<NewOutboxEvent>,
}

impl PaymentUpdate {
    pub fn new(transition: Option<Transition>) -> Self {
        PaymentUpdate {
            transition,
            schedule: CheckSchedule::Keep,
            count_query: false,
            event: None,
            observed: None,
            outbox: Vec::new(),
            if_link_already_paid: Vec::new(),
        }
    }

    /// The update for a change the rules decided (`mpesa_domain::decision`): its transition,
    /// and the reconciler's schedule cleared once the payment is final. The outbox rows are the
    /// caller's to add.
    pub fn from_change(change: PaymentChange) -> Self {
        let mut update = PaymentUpdate::new(Some(change.transition));
        if change.clears_schedule {
            update.schedule = CheckSchedule::Clear;
        }
        update
    }

    /// The timeline entry this update writes: its detail, named by the transition's kind, or by
    /// what was observed when nothing changes. `None` when it writes none.
    pub fn timeline_entry(&self) -> Option<NewPaymentEvent> {
        let detail = self.event.as_ref()?;
        let kind = match &self.transition {
            Some(t) => t.kind,
            None => self.observed?,
        };
        Some(NewPaymentEvent::named(kind, detail.clone()))
    }
}

/// What happens to the reconciler's `next_check_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckSchedule {
    Keep,
    At(Millis),
    /// Never again (the payment is final).
    Clear,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewPaymentEvent {
    /// A transition's kind (`TransitionKind::as_str`: `push_accepted`, `callback`, `query`,
    /// `expired`, `held_for_review`, `admin_settled`…), or `created`, or a refund's event.
    pub kind: String,
    /// JSON object as text with what a person needs to see on the timeline.
    pub detail: String,
}

impl NewPaymentEvent {
    /// An entry named by a transition's kind.
    pub fn named(kind: TransitionKind, detail: String) -> Self {
        NewPaymentEvent {
            kind: kind.as_str().to_owned(),
            detail,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentEvent {
    pub id: i64,
    pub payment_id: String,
    pub at: Millis,
    pub kind: String,
    pub detail: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentFilter {
    pub status: Option<PaymentStatus>,
    pub phone: Option<String>,
    pub reference: Option<String>,
    pub receipt: Option<String>,
    pub needs_review: Option<bool>,
    pub channel: Option<PaymentChannel>,
    pub created_from: Option<Millis>,
    pub created_to: Option<Millis>,
    /// Free text: matches id, phone, reference, receipt or CheckoutRequestID exactly, or a prefix of the reference.
    pub search: Option<String>,
    pub payment_link_id: Option<String>,
}

// ---- payment links ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPaymentLink {
    /// `pl_…`
    pub id: String,
    /// The unguessable part of the link's URL.
    pub slug: String,
    /// Tried in order until one is free among open links.
    pub account_candidates: Vec<String>,
    pub title: String,
    /// `(amount, amount_min, amount_max)`: a fixed amount, or a range.
    pub amount: Option<i64>,
    pub amount_min: Option<i64>,
    pub amount_max: Option<i64>,
    pub reference: Option<String>,
    pub description: Option<String>,
    pub single_use: bool,
    pub expires_at: Option<Millis>,
    /// The pay page's language; `None`: the customer's browser decides.
    pub language: Option<Lang>,
    pub created_at: Millis,
}

/// A payment link as stored. `status` is as stored: read it with
/// [`PaymentLink::status_at`] (an active link past its expiry is expired).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentLink {
    pub id: String,
    pub slug: String,
    pub account_number: String,
    pub title: String,
    pub amount: Option<i64>,
    pub amount_min: Option<i64>,
    pub amount_max: Option<i64>,
    pub reference: Option<String>,
    pub description: Option<String>,
    pub single_use: bool,
    pub expires_at: Option<Millis>,
    pub status: LinkStatus,
    pub language: Option<Lang>,
    pub paid_payment_id: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl PaymentLink {
    pub fn status_at(&self, now: Millis) -> LinkStatus {
        self.status.at(self.expires_at, now)
    }
}

/// What a link collected: its completed payments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LinkTotals {
    pub completed_count: i64,
    pub completed_amount: i64,
    pub payment_count: i64,
}

/// One counter of a rate limit: at most `limit` hits per fixed window of `window_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// e.g. `pay:phone:254708374149`.
    pub bucket: String,
    pub limit: i64,
    pub window_ms: Millis,
}

/// An account number registered for C2B validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct C2bAccount {
    pub account: String,
    pub created_at: Millis,
}

// ---- idempotency -----------------------------------------------------------------------------

/// A request's claim on an idempotency key, made in the transaction that creates its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    /// Whose keys it is among: an API key's id, or a door's own scope (`telegram-bot`).
    pub api_key_id: String,
    pub key: String,
    /// SHA-256 hex of the canonical request body.
    pub request_hash: String,
    pub created_at: Millis,
}

/// A stored answer to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

/// An idempotency key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// The id of the record the first request created (`pay_…`, `rfd_…`…).
    pub record_id: String,
    pub request_hash: String,
    /// The answer given, once it was.
    pub answer: Option<StoredResponse>,
}

impl IdempotencyRecord {
    /// What a request with `request_hash` finds under this key.
    pub fn against(self, request_hash: &str) -> KeyClaim {
        if self.request_hash != request_hash {
            return KeyClaim::Reused;
        }
        match self.answer {
            Some(answer) => KeyClaim::Answered(answer),
            None => KeyClaim::Running {
                record_id: self.record_id,
            },
        }
    }
}

/// What claiming an idempotency key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyClaim {
    /// The key is this request's: its record is created in the same transaction.
    Claimed,
    /// Same key, same request, answered before: give this answer again.
    Answered(StoredResponse),
    /// Same key, same request, not answered yet (still running, or its process died).
    Running { record_id: String },
    /// Same key, another request.
    Reused,
}

// Returned once per request and matched on at once: boxing `Payment` would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum CreatePaymentResult {
    Created(Payment),
    /// Same key, same body, answered before: send this again.
    Replay(StoredResponse),
    /// Same key, same body, first request still running.
    InProgress {
        payment_id: String,
    },
    /// Same key, other body.
    KeyReused,
    /// [`StartRules::one_open_per_phone`]: this payment to the phone is still open.
    OpenPayment(Box<Payment>),
    /// One of [`StartRules::limits`] is full until then (Unix ms).
    Limited {
        retry_at: Millis,
    },
    /// [`StartRules::one_open_per_link`]: the link is paid (`None`), or this payment through it
    /// is still open.
    LinkTaken(Option<Box<Payment>>),
}

// ---- callbacks -------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackKind {
    Stk,
    C2bValidation,
    C2bConfirmation,
    B2cResult,
    Timeout,
    /// The result of an initiator request (B2C, Reversal, Transaction Status, Account Balance).
    InitiatorResult,
    /// A notice to the Pull Transactions CallBackURL (kept for audit).
    Pull,
}

impl CallbackKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackKind::Stk => "stk",
            CallbackKind::C2bValidation => "c2b_validation",
            CallbackKind::C2bConfirmation => "c2b_confirmation",
            CallbackKind::B2cResult => "b2c_result",
            CallbackKind::Timeout => "timeout",
            CallbackKind::InitiatorResult => "initiator_result",
            CallbackKind::Pull => "pull",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Stk,
            Self::C2bValidation,
            Self::C2bConfirmation,
            Self::B2cResult,
            Self::Timeout,
            Self::InitiatorResult,
            Self::Pull,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// What became of a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackOutcome {
    /// It changed the payment.
    Applied,
    /// It repeated what was already recorded.
    Duplicate,
    /// It was valid but changed nothing (e.g. a failure for an already failed payment).
    Ignored,
    /// It put the payment on hold for review.
    HeldForReview,
    /// Its CheckoutRequestID matches no payment (yet).
    Unmatched,
    /// Its body could not be parsed.
    Unparseable,
    /// Stored only (kinds the gateway does not act on yet).
    Stored,
    /// Kept and flagged for a person, not booked: a C2B payment to a shortcode this gateway does
    /// not serve, or one it cannot book (the reason is the callback's error).
    Flagged,
    /// Stored raw and acknowledged, not applied yet: applying it conflicted with another
    /// transaction (on Galera, another node settling the same payment), so it is applied
    /// afterwards, by whichever instance gets to it first (also after a crash).
    Received,
}

impl From<CallbackClass> for CallbackOutcome {
    fn from(class: CallbackClass) -> Self {
        match class {
            CallbackClass::Applied => CallbackOutcome::Applied,
            CallbackClass::HeldForReview => CallbackOutcome::HeldForReview,
            CallbackClass::Duplicate => CallbackOutcome::Duplicate,
            CallbackClass::Ignored => CallbackOutcome::Ignored,
            CallbackClass::Unparseable => CallbackOutcome::Unparseable,
            CallbackClass::Unmatched => CallbackOutcome::Unmatched,
        }
    }
}

impl CallbackOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackOutcome::Applied => "applied",
            CallbackOutcome::Duplicate => "duplicate",
            CallbackOutcome::Ignored => "ignored",
            CallbackOutcome::HeldForReview => "held_for_review",
            CallbackOutcome::Unmatched => "unmatched",
            CallbackOutcome::Unparseable => "unparseable",
            CallbackOutcome::Stored => "stored",
            CallbackOutcome::Flagged => "flagged",
            CallbackOutcome::Received => "received",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Applied,
            Self::Duplicate,
            Self::Ignored,
            Self::HeldForReview,
            Self::Unmatched,
            Self::Unparseable,
            Self::Stored,
            Self::Flagged,
            Self::Received,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A callback as received, before it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingCallback {
    pub id: String,
    pub kind: CallbackKind,
    pub received_at: Millis,
    pub remote_addr: Option<String>,
    /// Request headers as a JSON object text.
    pub headers: String,
    /// The raw body exactly as received (may be invalid UTF-8 or JSON).
    pub body: Vec<u8>,
    /// The CheckoutRequestID it names, when it could be parsed.
    pub checkout_request_id: Option<String>,
    /// The receipt (`TransID`) a C2B confirmation names, when it could be parsed: the payment
    /// it settles is the one that holds this receipt, or the one it books.
    pub receipt: Option<String>,
    /// Why it could not be parsed, when it could not.
    pub parse_error: Option<String>,
}

/// The decision for one callback.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackDecision {
    pub outcome: CallbackOutcome,
    /// Applied to the payment the callback names (only when there is one).
    pub update: Option<PaymentUpdate>,
    /// Extra outbox rows not tied to a payment change (e.g. an alert about an unmatched success).
    pub outbox: Vec<NewOutboxEvent>,
    /// A payment this callback brings into being (a C2B confirmation), as it is to be written,
    /// with `update` carrying its timeline entry and outbox rows. Storage inserts it unless its
    /// receipt is booked already (by another copy, path or instance): the callback is then a
    /// `duplicate` of the payment that holds the receipt, and nothing of `update` is written.
    pub book: Option<Payment>,
}

impl CallbackDecision {
    /// A decision that changes no payment.
    pub fn only(outcome: CallbackOutcome) -> Self {
        CallbackDecision {
            outcome,
            update: None,
            outbox: Vec::new(),
            book: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct IngestedCallback {
    pub callback_id: String,
    pub outcome: CallbackOutcome,
    /// The payment after the change, when the callback named one.
    pub payment: Option<Payment>,
    /// The update that was applied, when one was.
    pub update: Option<PaymentUpdate>,
}

/// A stored callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RawCallback {
    pub id: String,
    pub kind: CallbackKind,
    pub received_at: Millis,
    pub remote_addr: Option<String>,
    pub headers: String,
    pub body: Vec<u8>,
    pub checkout_request_id: Option<String>,
    pub receipt: Option<String>,
    pub payment_id: Option<String>,
    pub outcome: CallbackOutcome,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackFilter {
    pub outcome: Option<CallbackOutcome>,
    pub kind: Option<CallbackKind>,
    pub payment_id: Option<String>,
}

// ---- outbox ----------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Telegram,
    Webhook,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Self::Email, Self::Telegram, Self::Webhook];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Telegram => "telegram",
            Channel::Webhook => "webhook",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    Pending,
    Delivered,
    /// Every attempt failed; waits for a person (`outbox retry`).
    Dead,
    /// The destination refuses us for good (e.g. a chat that blocked the bot).
    Blocked,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Delivered => "delivered",
            OutboxStatus::Dead => "dead",
            OutboxStatus::Blocked => "blocked",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Dead, Self::Blocked]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxEvent {
    /// `evt_…`: the stable id receivers use to drop repeats.
    pub id: String,
    pub payment_id: Option<String>,
    pub channel: Channel,
    /// e.g. `payment.completed`, `payment.held_for_review`, `receipt`, `test`.
    pub event_type: String,
    /// Email address, Telegram chat id, or webhook URL.
    pub destination: String,
    /// What to send, as JSON text (the channel decides its shape).
    pub payload: String,
    /// Unique: a second event with the same key is not inserted.
    pub dedupe_key: String,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxEvent {
    pub id: String,
    pub payment_id: Option<String>,
    pub channel: Channel,
    pub event_type: String,
    pub destination: String,
    pub payload: String,
    pub dedupe_key: String,
    pub status: OutboxStatus,
    pub attempts: i32,
    pub next_attempt_at: Millis,
    pub lease_owner: Option<String>,
    pub lease_until: Option<Millis>,
    pub last_error: Option<String>,
    pub created_at: Millis,
    pub delivered_at: Option<Millis>,
}

/// The consequence of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryResult {
    Delivered,
    /// Failed; try again at this time.
    RetryAt(Millis),
    /// Failed for the last time.
    Dead,
    /// The destination refuses us for good.
    Blocked,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub started_at: Millis,
    pub duration_ms: i64,
    pub result: DeliveryResult,
    /// HTTP status or SMTP code, when there was one.
    pub response_code: Option<i32>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxAttempt {
    pub id: i64,
    pub event_id: String,
    pub attempt: i32,
    pub started_at: Millis,
    pub duration_ms: i64,
    /// `delivered`, `failed`, `dead`, `blocked`.
    pub result: String,
    pub response_code: Option<i32>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxFilter {
    pub status: Option<OutboxStatus>,
    pub channel: Option<Channel>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutboxCounts {
    pub pending: i64,
    pub delivered: i64,
    pub dead: i64,
    pub blocked: i64,
    /// Pending events already due (the backlog).
    pub due: i64,
}

// ---- API keys, admin, Telegram -----------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    /// The first characters of the key, shown so people can tell keys apart.
    pub prefix: String,
    /// SHA-256 hex of the whole key; the key itself is never stored.
    #[serde(skip)]
    pub hash: String,
    pub created_at: Millis,
    pub revoked_at: Option<Millis>,
    pub last_used_at: Option<Millis>,
    /// `admin:<username>` for a key made on the dashboard; `None` for one made with the command
    /// line. The four-eyes rules count what the key asks for as this admin's.
    pub created_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUser {
    pub id: String,
    pub username: String,
    /// Argon2 PHC string.
    pub password_hash: String,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSession {
    /// SHA-256 hex of the session cookie's token.
    pub token_hash: String,
    pub user_id: String,
    pub username: String,
    pub csrf_token: String,
    pub created_at: Millis,
    pub expires_at: Millis,
}

/// Failed dashboard sign-ins, as the sign-in limiter sees them (see
/// [`crate::Storage::begin_sign_in`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignInFailures {
    /// Failures of this (username, address) pair since its last successful sign-in.
    pub pair_failures: i64,
    /// When the last of them was.
    pub pair_last_failed_at: Option<Millis>,
    /// Failures from this address, for any username, in pairs that failed since the given time.
    pub address_failures: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TelegramLink {
    pub chat_id: i64,
    pub user_id: i64,
    pub phone: String,
    pub linked_at: Millis,
    pub blocked_at: Option<Millis>,
}

/// The message the bot keeps up to date for a payment started from a chat (one per payment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TelegramStatusMessage {
    pub payment_id: String,
    pub chat_id: i64,
    pub message_id: i64,
    pub updated_at: Millis,
}

// ---- pages and statistics ----------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// 1..=500; storage clamps it.
    pub limit: u32,
    /// The opaque cursor from the previous page.
    pub cursor: Option<String>,
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest {
            limit: 50,
            cursor: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatusTotals {
    pub count: i64,
    pub amount: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PaymentStats {
    /// Keyed by status name.
    pub by_status: std::collections::BTreeMap<String, StatusTotals>,
    /// Failed payments by result code.
    pub failures_by_code: std::collections::BTreeMap<String, i64>,
    pub needs_review: i64,
    /// Completed payments keyed by channel (`stk`, `c2b`).
    pub completed_by_channel: std::collections::BTreeMap<String, StatusTotals>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DailyVolume {
    /// `YYYY-MM-DD` in East Africa Time.
    pub day: String,
    pub completed_count: i64,
    pub completed_amount: i64,
    pub total_count: i64,
}

//! The initiator layer: every B2C, Reversal, Transaction Status and Account Balance request is
//! stored before it is sent, sent once, and followed to its end — by its result callback, by its
//! queue-timeout notice, or (for money whose fate is unknown) by Transaction Status. Never by
//! sending it again.
//!
//! Who asked is the request's *owner* (`purpose` + `owner_id`: a refund, a payout, a receipt
//! check…). An owner registers an [`InitiatorOwner`] for its purpose and is told once the request
//! is final; that call is repeated (after a crash, or when the owner failed) until it succeeds,
//! so an owner's handling must be idempotent — a state machine whose final state is set once is.
//!
//! For another module (e.g. checking a C2B receipt):
//! ```ignore
//! initiator.register_owner("receipt_check", Arc::new(MyOwner { .. }));
//! let request = initiator.check_receipt("UKM4AB12CD", "receipt_check", Some("UKM4AB12CD")).await?;
//! // later: MyOwner::on_final(&request) with request.status Completed (request.result holds the
//! // parsed Transaction Status details as JSON) or Failed (result_code / result_desc say why).
//! ```

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use daraja::wire::result::ResultEnvelope;
use daraja::{
    AccountBalanceParams, B2cCommand, B2cParams, DarajaClient, DarajaError, IdentifierType,
    InitiatorAccepted, ReversalParams, TransactionStatusParams,
};
use mpesa_domain::initiator::{
    self as rules, ACKNOWLEDGED, CONTRADICTED, DueAction, RequestEventKind, RequestOutcome,
    RequestSnapshot, RequestTransition, ResolvePolicy, ResultReport, SETTLED_BY_HAND,
    StatusFinding,
};
use mpesa_domain::{Amount, Msisdn, RequestKind, RequestStatus, ResultCode};
use mpesa_storage::{
    CallbackOutcome, IfReceiptHeld, IncomingCallback, IngestedInitiatorCallback,
    InitiatorCallbackIds, InitiatorRequest, InitiatorUpdate, NewInitiatorRequest, NewMoneyOutEvent,
    NewOutboxEvent, SettleOwner, Storage, StorageError,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use url::Url;

use crate::clock::Clock;
use crate::ids::new_id;

/// A decision about a request, made on its locked row.
type Decide = dyn Fn(&InitiatorRequest) -> RequestOutcome + Send + Sync;

/// The purpose of a Transaction Status request that resolves another request.
pub const RESOLVE: &str = "resolve";

#[derive(Debug, thiserror::Error)]
pub enum InitiatorError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The request was stored and failed before or at Daraja (refused, invalid, not sent).
    #[error("Daraja refused the request: {0}")]
    Refused(String),
    #[error("the initiator is not configured (MPESA_INITIATOR_NAME, MPESA_INITIATOR_PASSWORD)")]
    NotConfigured,
}

/// What to ask Daraja, in plain values (stored as the request's `params`; no credential).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "api", rename_all = "snake_case")]
pub enum Ask {
    B2c {
        /// `BusinessPayment`, `SalaryPayment`, `PromotionPayment`.
        command: String,
        amount: i64,
        phone: String,
        remarks: String,
        occasion: Option<String>,
    },
    Reversal {
        receipt: String,
        amount: i64,
        /// The shortcode that received the payment.
        receiver_party: Option<String>,
        remarks: String,
        /// The payment reversed (ours, never sent to Daraja): the refund's alerts name it, and
        /// some are written on the locked request, where the refund cannot be read. `None` on
        /// requests stored before it was kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payment_id: Option<String>,
    },
    TransactionStatus {
        receipt: Option<String>,
        originator_conversation_id: Option<String>,
        party_a: Option<String>,
        remarks: String,
    },
    AccountBalance {
        party_a: Option<String>,
    },
}

impl Ask {
    pub fn kind(&self) -> RequestKind {
        match self {
            Ask::B2c { .. } => RequestKind::B2c,
            Ask::Reversal { .. } => RequestKind::Reversal,
            Ask::TransactionStatus { .. } => RequestKind::TransactionStatus,
            Ask::AccountBalance { .. } => RequestKind::AccountBalance,
        }
    }

    fn path_segment(kind: RequestKind) -> &'static str {
        match kind {
            RequestKind::B2c => "b2c",
            RequestKind::Reversal => "reversal",
            RequestKind::TransactionStatus => "status",
            RequestKind::AccountBalance => "balance",
        }
    }
}

/// Told when a request it owns is final. Called at least once per final request; must be
/// idempotent.
#[async_trait]
pub trait InitiatorOwner: Send + Sync {
    async fn on_final(&self, request: &InitiatorRequest) -> Result<(), StorageError>;

    /// The admins' alert that Daraja contradicts what a person recorded about `request` (`text`
    /// says how, after the owner's name: "Payout po_…: "), written with the contradiction: once,
    /// since it holds the request again.
    fn contradiction_alert(
        &self,
        _request: &InitiatorRequest,
        _text: &str,
        _now: i64,
    ) -> Vec<NewOutboxEvent> {
        Vec::new()
    }

    /// The admins' alert that Daraja's answer for `request` brings a receipt a person recorded
    /// by hand on another request (`text` says which, after the owner's name), written with
    /// the hold it causes.
    fn receipt_in_use_alert(
        &self,
        _request: &InitiatorRequest,
        _text: &str,
        _now: i64,
    ) -> Vec<NewOutboxEvent> {
        Vec::new()
    }
}

#[derive(Debug, Clone)]
pub struct InitiatorSettings {
    /// `<public URL>/callbacks/<secret>/`: results go to `result/<api>`, notices to
    /// `timeout/<api>`.
    pub callback_base: Url,
    pub policy: ResolvePolicy,
}

#[derive(Clone)]
pub struct Initiator(Arc<Inner>);

struct Inner {
    storage: Arc<dyn Storage>,
    daraja: DarajaClient,
    settings: InitiatorSettings,
    owners: RwLock<HashMap<String, Arc<dyn InitiatorOwner>>>,
    /// "Now" for every deadline: when a request is asked about (the result wait, the backoff),
    /// when it is held for a person (the keep-asking time), and its stored times.
    clock: Clock,
    /// Woken when an owner may have written outbox rows.
    outbox_wake: std::sync::OnceLock<Arc<tokio::sync::Notify>>,
}

/// Which door a callback came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackDoor {
    Result,
    QueueTimeout,
}

impl Initiator {
    pub fn new(
        storage: Arc<dyn Storage>,
        daraja: DarajaClient,
        settings: InitiatorSettings,
        clock: Clock,
    ) -> Self {
        let initiator = Initiator(Arc::new(Inner {
            storage,
            daraja,
            settings,
            clock,
            owners: RwLock::new(HashMap::new()),
            outbox_wake: std::sync::OnceLock::new(),
        }));
        initiator.register_owner(
            RESOLVE,
            Arc::new(Resolver {
                initiator: initiator.downgrade(),
            }),
        );
        initiator
    }

    /// Wakes the outbox worker after an owner wrote its notifications.
    pub fn with_wake(self, wake: Arc<tokio::sync::Notify>) -> Self {
        let _ = self.0.outbox_wake.set(wake);
        self
    }

    fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.0)
    }

    /// The requests made for `purpose` about `owner_id`, oldest first.
    pub async fn requests_for(
        &self,
        purpose: &str,
        owner_id: &str,
    ) -> Result<Vec<InitiatorRequest>, StorageError> {
        self.0
            .storage
            .initiator_requests_for(purpose, owner_id)
            .await
    }

    /// The clock the layer and its owners (refunds, payouts, receipt checks) read.
    pub fn clock(&self) -> &Clock {
        &self.0.clock
    }

    fn now_ms(&self) -> i64 {
        self.0.clock.now_ms()
    }

    pub fn policy(&self) -> &ResolvePolicy {
        &self.0.settings.policy
    }

    /// Whether an initiator name and password are configured.
    pub fn configured(&self) -> bool {
        self.0.daraja.security_credential().is_ok()
    }

    /// The owner told about requests of `purpose` (one per purpose; a later one replaces it).
    pub fn register_owner(&self, purpose: &str, owner: Arc<dyn InitiatorOwner>) {
        self.0
            .owners
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(purpose.to_owned(), owner);
    }

    /// Stores the request (`sending`), sends it once, and records Daraja's answer: `accepted`,
    /// `failed` (refused: nothing was queued) or `unknown` (the answer was lost; resolved by
    /// Transaction Status). Returns the request as stored; a refusal is a stored `failed`
    /// request, not an error, and its owner is told.
    pub async fn submit(
        &self,
        purpose: &str,
        owner_id: Option<&str>,
        ask: Ask,
    ) -> Result<InitiatorRequest, InitiatorError> {
        let request = self.store(purpose, owner_id, &ask).await?;
        self.send(request, ask).await
    }

    /// Stores the request as `sending` (so an owner can record it before anything goes out).
    pub async fn store(
        &self,
        purpose: &str,
        owner_id: Option<&str>,
        ask: &Ask,
    ) -> Result<InitiatorRequest, InitiatorError> {
        self.store_as(&Self::new_request_id(), purpose, owner_id, ask)
            .await
    }

    /// An id for a request not stored yet (for an owner that records it first).
    pub fn new_request_id() -> String {
        new_id("ireq")
    }

    /// [`Initiator::store`] under the id its owner recorded first (a refund, a payout): `None`
    /// when another party stored it already, and sends it. The id is the request's primary
    /// key, so of two parties storing it only one gets the request to send.
    pub async fn store_recorded(
        &self,
        id: &str,
        purpose: &str,
        owner_id: Option<&str>,
        ask: &Ask,
    ) -> Result<Option<InitiatorRequest>, InitiatorError> {
        match self.store_as(id, purpose, owner_id, ask).await {
            Ok(stored) => Ok(Some(stored)),
            Err(InitiatorError::Storage(StorageError::Conflict(_))) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn store_as(
        &self,
        id: &str,
        purpose: &str,
        owner_id: Option<&str>,
        ask: &Ask,
    ) -> Result<InitiatorRequest, InitiatorError> {
        let kind = ask.kind();
        let id = id.to_owned();
        // B2C v3 takes our OriginatorConversationID: Daraja refuses a repeat, and Transaction
        // Status finds the payout by it. The other APIs name the request in their answer.
        let originator_conversation_id = (kind == RequestKind::B2c).then(|| id.clone());
        let now = self.now_ms();
        let request = self
            .0
            .storage
            .create_initiator_request(
                NewInitiatorRequest {
                    id: id.clone(),
                    kind,
                    purpose: purpose.to_owned(),
                    owner_id: owner_id.map(str::to_owned),
                    originator_conversation_id: originator_conversation_id.clone(),
                    params: serde_json::to_string(ask).unwrap_or_else(|_| "{}".into()),
                    created_at: now,
                },
                // If this process stops during the send, the resolver finds it after the wait.
                Some(now + self.0.settings.policy.result_wait_ms),
            )
            .await?;
        Ok(request)
    }

    /// Sends a stored request, once.
    pub async fn send(
        &self,
        request: InitiatorRequest,
        ask: Ask,
    ) -> Result<InitiatorRequest, InitiatorError> {
        // The send runs on its own task: a caller that goes away (a closed connection) cannot
        // cut it between sending and recording the answer.
        let this = self.clone();
        tokio::spawn(async move { this.send_once(&request, &ask).await })
            .await
            .map_err(|e| InitiatorError::Storage(StorageError::Database(e.to_string())))?
    }

    /// Transaction Status of a receipt, on behalf of `purpose`/`owner_id` (told when it is final).
    pub async fn check_receipt(
        &self,
        receipt: &str,
        purpose: &str,
        owner_id: Option<&str>,
        party_a: Option<&str>,
    ) -> Result<InitiatorRequest, InitiatorError> {
        self.submit(
            purpose,
            owner_id,
            Ask::TransactionStatus {
                receipt: Some(receipt.trim().to_owned()),
                originator_conversation_id: None,
                party_a: party_a.map(str::to_owned),
                remarks: "Receipt check".into(),
            },
        )
        .await
    }

    fn url(&self, door: &str, kind: RequestKind) -> Url {
        self.0
            .settings
            .callback_base
            .join(&format!("{door}/{}", Ask::path_segment(kind)))
            .expect("a relative path joins a base URL")
    }

    async fn call(
        &self,
        request: &InitiatorRequest,
        ask: &Ask,
    ) -> Result<InitiatorAccepted, DarajaError> {
        let d = &self.0.daraja;
        let kind = ask.kind();
        let (result_url, queue_timeout_url) = (self.url("result", kind), self.url("timeout", kind));
        let invalid =
            |field: &'static str| DarajaError::Invalid(daraja::InvalidRequest::Missing { field });
        match ask {
            Ask::B2c {
                command,
                amount,
                phone,
                remarks,
                occasion,
            } => {
                let command = match command.as_str() {
                    "SalaryPayment" => B2cCommand::SalaryPayment,
                    "PromotionPayment" => B2cCommand::PromotionPayment,
                    _ => B2cCommand::BusinessPayment,
                };
                d.b2c(&B2cParams {
                    originator_conversation_id: request
                        .originator_conversation_id
                        .clone()
                        .unwrap_or_else(|| request.id.clone()),
                    command,
                    amount: Amount::from_stored(*amount),
                    phone: Msisdn::parse(phone).map_err(|_| invalid("PartyB"))?,
                    remarks: remarks.clone(),
                    occasion: occasion.clone(),
                    result_url,
                    queue_timeout_url,
                })
                .await
            }
            Ask::Reversal {
                receipt,
                amount,
                receiver_party,
                remarks,
                ..
            } => {
                d.reversal(&ReversalParams {
                    transaction_id: receipt.clone(),
                    amount: Amount::from_stored(*amount),
                    receiver_party: receiver_party.clone(),
                    remarks: remarks.clone(),
                    occasion: None,
                    result_url,
                    queue_timeout_url,
                })
                .await
            }
            Ask::TransactionStatus {
                receipt,
                originator_conversation_id,
                party_a,
                remarks,
            } => {
                d.transaction_status(&TransactionStatusParams {
                    transaction_id: receipt.clone(),
                    original_conversation_id: originator_conversation_id.clone(),
                    party_a: party_a.clone(),
                    identifier_type: IdentifierType::ShortCode,
                    remarks: remarks.clone(),
                    occasion: None,
                    result_url,
                    queue_timeout_url,
                })
                .await
            }
            Ask::AccountBalance { party_a } => {
                d.account_balance(&AccountBalanceParams {
                    party_a: party_a.clone(),
                    identifier_type: IdentifierType::ShortCode,
                    remarks: "Balance".into(),
                    result_url,
                    queue_timeout_url,
                })
                .await
            }
        }
    }

    async fn send_once(
        &self,
        request: &InitiatorRequest,
        ask: &Ask,
    ) -> Result<InitiatorRequest, InitiatorError> {
        let answer = self.call(request, ask).await;
        let now = self.now_ms();
        let policy = self.0.settings.policy;
        let (decide, event): (Box<Decide>, Value) = match &answer {
            Ok(a) => {
                let (ocid, cid) = (
                    a.originator_conversation_id.clone(),
                    a.conversation_id.clone(),
                );
                (
                    Box::new(move |r: &InitiatorRequest| {
                        rules::on_accepted(&r.snapshot(), &ocid, &cid)
                    }),
                    json!({"originator_conversation_id": a.originator_conversation_id, "conversation_id": a.conversation_id, "response": a.response_description}),
                )
            }
            Err(e) if e.may_have_been_processed() || refusal_may_have_moved_money(request, e) => {
                let reason = e.to_string();
                (
                    Box::new(move |r: &InitiatorRequest| {
                        rules::on_send_unknown(&r.snapshot(), &reason)
                    }),
                    json!({"error": e.to_string()}),
                )
            }
            Err(e) => {
                let code = e
                    .error_code()
                    .map(str::to_owned)
                    .unwrap_or_else(|| e.outcome_label());
                let message = e
                    .error_message()
                    .map(str::to_owned)
                    .unwrap_or_else(|| e.to_string());
                (
                    Box::new(move |r: &InitiatorRequest| {
                        rules::on_refused(&r.snapshot(), &code, &message)
                    }),
                    json!({"error_code": e.error_code(), "error": e.to_string()}),
                )
            }
        };
        let written = self
            .0
            .storage
            .update_initiator_request(&request.id, now, &|r| {
                let outcome = decide(r);
                let t = outcome.transition()?.clone();
                let next = rules::next_check_at(&after(r, &t), now, 0, &policy);
                Some(InitiatorUpdate {
                    event: Some(NewMoneyOutEvent {
                        kind: t.kind.as_str().to_owned(),
                        detail: event.to_string(),
                    }),
                    next_check_at: Some(next),
                    transition: Some(t),
                    ..Default::default()
                })
            })
            .await?;
        let request = match written {
            Some((r, _)) => r,
            None => self
                .0
                .storage
                .get_initiator_request(&request.id)
                .await?
                .ok_or(StorageError::NotFound)?,
        };
        // A result that came before the acknowledgement was recorded named no request then.
        let request = if answer.is_ok() && !request.status.is_final() {
            self.rematch(&request.id).await?.unwrap_or(request)
        } else {
            request
        };
        if request.status.is_final() {
            self.tell_owner(&request).await;
        }
        match answer {
            Err(e) if !e.may_have_been_processed() && request.status == RequestStatus::Failed => {
                if matches!(
                    e,
                    DarajaError::Invalid(daraja::InvalidRequest::InitiatorNotConfigured)
                ) {
                    return Err(InitiatorError::NotConfigured);
                }
                Ok(request)
            }
            _ => Ok(request),
        }
    }

    /// A result or queue-timeout callback: stored raw and applied in one transaction; the owner
    /// is told when it made the request final. An unparseable body is stored too (`unparseable`).
    pub async fn receive(
        &self,
        mut raw: IncomingCallback,
        door: CallbackDoor,
    ) -> Result<IngestedInitiatorCallback, StorageError> {
        raw.received_at = self.now_ms();
        let parsed = ResultEnvelope::parse(&raw.body);
        let ids = match &parsed {
            Ok(e) => InitiatorCallbackIds {
                originator_conversation_id: Some(e.result.originator_conversation_id.clone()),
                conversation_id: Some(e.result.conversation_id.clone()),
            },
            Err(_) => InitiatorCallbackIds::default(),
        };
        let callback_id = raw.id.clone();
        let now = self.now_ms();
        let policy = self.0.settings.policy;
        let decide =
            |request: Option<&InitiatorRequest>| -> (CallbackOutcome, Option<InitiatorUpdate>) {
                let envelope = match &parsed {
                    Ok(e) => e,
                    Err(_) => return (CallbackOutcome::Unparseable, None),
                };
                // A result that names no request of ours is kept and shown, never applied.
                let Some(request) = request else {
                    return (CallbackOutcome::Unmatched, None);
                };
                decide_callback(self, request, envelope, door, &callback_id, now, &policy)
            };
        let ingested = self
            .0
            .storage
            .ingest_initiator_callback(raw, ids.clone(), now, &decide)
            .await?;
        // It may have raced the acknowledgement of its request: if the request is known by
        // these ids now, apply it (whichever of the two comes second does).
        if ingested.outcome == CallbackOutcome::Unmatched
            && let Some(request) = self.0.storage.find_initiator_request(&ids).await?
            && let Some(done) = self.rematch(&request.id).await?
        {
            self.tell_owner(&done).await;
        }
        if ingested.became_final
            && let Some(request) = &ingested.request
        {
            self.tell_owner(request).await;
        }
        Ok(ingested)
    }

    /// Applies the stored results that named this request before it was known by their ids.
    /// Returns the request when they made it final.
    async fn rematch(&self, request_id: &str) -> Result<Option<InitiatorRequest>, StorageError> {
        let now = self.now_ms();
        let policy = self.0.settings.policy;
        self.0
            .storage
            .rematch_initiator_callbacks(request_id, now, &|raw, r| {
                let door = if raw.kind == mpesa_storage::CallbackKind::Timeout {
                    CallbackDoor::QueueTimeout
                } else {
                    CallbackDoor::Result
                };
                match ResultEnvelope::parse(&raw.body) {
                    Ok(e) => decide_callback(self, r, &e, door, &raw.id, now, &policy),
                    Err(_) => (CallbackOutcome::Unparseable, None),
                }
            })
            .await
    }

    /// The rows that alert the admins that Daraja (`what`: reported completed or not, with its
    /// result code and receipt) contradicts the settlement by hand recorded on `request`.
    fn contradiction_rows(
        &self,
        request: &InitiatorRequest,
        what: &str,
        reported: Reported<'_>,
        now: i64,
    ) -> Vec<NewOutboxEvent> {
        self.owner_of(request)
            .map(|owner| {
                owner.contradiction_alert(
                    request,
                    &contradiction_text(request, what, reported),
                    now,
                )
            })
            .unwrap_or_default()
    }

    fn owner_of(&self, request: &InitiatorRequest) -> Option<Arc<dyn InitiatorOwner>> {
        self.0
            .owners
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&request.purpose)
            .cloned()
    }

    /// What an update that books Daraja's receipt (`what`: "M-Pesa's result"…) becomes when a
    /// person recorded that receipt by hand on another request: the request holds nothing of it
    /// and is held for a person, with the admins' alert naming both. `detail` is the timeline
    /// entry's.
    fn if_receipt_held(&self, what: &'static str, detail: Value, now: i64) -> IfReceiptHeld {
        let initiator = self.clone();
        IfReceiptHeld(Arc::new(
            move |r: &InitiatorRequest, holder: &InitiatorRequest| {
                let receipt = holder.receipt.clone().unwrap_or_default();
                let holder_name = owner_name(holder);
                let mut d = detail.clone();
                d["receipt"] = json!(receipt);
                d["held_by_request_id"] = json!(holder.id);
                d["held_by"] = json!(holder_name);
                let outcome = rules::on_receipt_in_use(&r.snapshot(), &receipt, &holder_name);
                let Some(t) = outcome.transition().cloned() else {
                    return InitiatorUpdate::default();
                };
                let text = receipt_in_use_text(r, holder, what, &receipt);
                let outbox = initiator
                    .owner_of(r)
                    .map(|owner| owner.receipt_in_use_alert(r, &text, now))
                    .unwrap_or_default();
                InitiatorUpdate {
                    event: Some(NewMoneyOutEvent {
                        kind: t.kind.as_str().to_owned(),
                        detail: with_note(d, &t).to_string(),
                    }),
                    next_check_at: Some(None),
                    transition: Some(t),
                    outbox,
                    ..Default::default()
                }
            },
        ))
    }

    /// Tells the owner of a final request, once it succeeds; the resolver repeats what failed.
    pub async fn tell_owner(&self, request: &InitiatorRequest) {
        let owner = self
            .0
            .owners
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&request.purpose)
            .cloned();
        let Some(owner) = owner else {
            // Nobody to tell (a balance question is read from the request itself).
            let _ = self
                .0
                .storage
                .mark_initiator_owner_notified(&request.id, self.now_ms())
                .await;
            return;
        };
        match owner.on_final(request).await {
            Ok(()) => {
                if let Some(wake) = self.0.outbox_wake.get() {
                    wake.notify_one();
                }
                if let Err(e) = self
                    .0
                    .storage
                    .mark_initiator_owner_notified(&request.id, self.now_ms())
                    .await
                {
                    tracing::warn!(request_id = %request.id, error = %e, "owner told, but not recorded; it will be told again");
                }
            }
            Err(e) => {
                tracing::warn!(request_id = %request.id, purpose = %request.purpose, error = %e, "the owner of a final request could not be told; the resolver tries again")
            }
        }
    }

    /// The request behind a payout or refund when it is held for a person and still open: the
    /// only kind [`Initiator::settle_by_hand`] takes.
    pub async fn held_open(
        &self,
        request_id: Option<&str>,
    ) -> Result<Option<InitiatorRequest>, StorageError> {
        let Some(id) = request_id else {
            return Ok(None);
        };
        Ok(self
            .0
            .storage
            .get_initiator_request(id)
            .await?
            .filter(|r| r.needs_review && !r.status.is_final()))
    }

    /// Records what a person found out about a request held for them (`completed` with the
    /// receipt they saw, or failed), with their note, and makes `owner` (its payout or refund)
    /// final with it, in one transaction; the resolver stops asking. `payment_id` (a refund's
    /// payment) is kept with the record: the alert of a later contradiction names it, and it
    /// is written where no read is possible. `Err(why)` when the request is not held open
    /// (final already, never held, or not money).
    #[allow(clippy::too_many_arguments)]
    pub async fn settle_by_hand(
        &self,
        request_id: &str,
        completed: bool,
        receipt: Option<&str>,
        note: &str,
        by: &str,
        payment_id: Option<&str>,
        owner: SettleOwner<'_>,
    ) -> Result<Result<InitiatorRequest, String>, StorageError> {
        let mut record = json!({
            "by": by,
            "note": note,
            "outcome": if completed { "completed" } else { "failed" },
            "receipt": receipt.filter(|_| completed),
        });
        if let Some(payment_id) = payment_id {
            record["payment_id"] = json!(payment_id);
        }
        let result = json!({ SETTLED_BY_HAND: record }).to_string();
        self.decided_by_a_person(
            request_id,
            &|r| rules::on_settled_by_hand(r, completed, receipt, note),
            &record,
            &|_| result.clone(),
            owner,
        )
        .await
    }

    /// A person (`admin`) acknowledges, with their note, that Daraja contradicts the outcome
    /// recorded by hand on a final request held for that reason: the hold is lifted, with a
    /// timeline entry on the request and on `owner` (its payout or refund, whose update must
    /// change nothing else); status, receipt and amounts stay, and nothing is sent to Daraja.
    /// `Err(why)` when there is no request, it is not held after a contradiction, or it was
    /// acknowledged already.
    pub async fn acknowledge(
        &self,
        request_id: Option<&str>,
        note: &str,
        admin: &str,
        owner: SettleOwner<'_>,
    ) -> Result<Result<(), String>, StorageError> {
        let Some(request_id) = request_id else {
            return Ok(Err(
                "it was never sent: there is nothing to acknowledge".into()
            ));
        };
        let by = format!("admin:{admin}");
        // Four eyes here too: the admin whose record M-Pesa contradicts does not close the matter.
        let settled_by = self
            .0
            .storage
            .get_initiator_request(request_id)
            .await?
            .and_then(|r| {
                details_of(&r)[SETTLED_BY_HAND]["by"]
                    .as_str()
                    .map(str::to_owned)
            });
        if settled_by.as_deref() == Some(by.as_str()) {
            return Ok(Err(
                "the admin who recorded the outcome by hand cannot acknowledge what M-Pesa says \
                 against it: another admin must"
                    .into(),
            ));
        }
        let record = json!({ "by": by, "note": note });
        // Kept beside the settlement by hand, which the alerts and the pages read, with the
        // answer acknowledged: the same answer later is kept for the record, another holds the
        // request again.
        let result = |r: &InitiatorRequest| {
            let mut acknowledged = record.clone();
            acknowledged[CONTRADICTED] = details_of(r)
                .get(CONTRADICTED)
                .cloned()
                .unwrap_or(Value::Null);
            details_with(r, ACKNOWLEDGED, acknowledged)
        };
        let decided = self
            .decided_by_a_person(
                request_id,
                &|r| rules::on_acknowledged(r, note),
                &record,
                &result,
                owner,
            )
            .await;
        match decided {
            Ok(done) => Ok(done.map(|_| ())),
            Err(StorageError::Conflict(why)) => Ok(Err(why)),
            Err(e) => Err(e),
        }
    }

    /// A person's decision about a request (`rule`), written with its timeline entry
    /// (`record`), its new result details and its owner's update in one transaction, one
    /// decision by hand at a time. `Err(why)`: the rule refused it.
    async fn decided_by_a_person(
        &self,
        request_id: &str,
        rule: &(dyn Fn(&RequestSnapshot) -> RequestOutcome + Send + Sync),
        record: &Value,
        result: &(dyn Fn(&InitiatorRequest) -> String + Send + Sync),
        owner: SettleOwner<'_>,
    ) -> Result<Result<InitiatorRequest, String>, StorageError> {
        // Why the locked row refused (the decision may run again on a conflict: last one wins).
        let refusal = std::sync::Mutex::new(None::<&'static str>);
        let written = self
            .0
            .storage
            .settle_initiator_request(
                request_id,
                self.now_ms(),
                &|r| match rule(&r.snapshot()) {
                    RequestOutcome::Changed(t) => Some(InitiatorUpdate {
                        event: Some(NewMoneyOutEvent {
                            kind: t.kind.as_str().to_owned(),
                            detail: record.to_string(),
                        }),
                        result: Some(result(r)),
                        next_check_at: Some(None),
                        transition: Some(t),
                        ..Default::default()
                    }),
                    RequestOutcome::Unchanged(why) => {
                        *refusal.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                        None
                    }
                    RequestOutcome::Duplicate => None,
                },
                owner,
            )
            .await?;
        match written {
            Some(r) => {
                if let Some(wake) = self.0.outbox_wake.get() {
                    wake.notify_one();
                }
                Ok(Ok(r))
            }
            None => Ok(Err(refusal
                .into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or("the request cannot be decided by hand")
                .to_owned())),
        }
    }

    /// One pass of the resolver: requests with no answer in time are asked about (Transaction
    /// Status), given up (reads) or held for a person; owners not told yet are told. Returns how
    /// many requests it acted on.
    pub async fn resolve_due(&self, lease_ms: i64, batch: u32) -> Result<usize, StorageError> {
        let now = self.now_ms();
        let due = self
            .0
            .storage
            .claim_due_initiator_requests(now, now + lease_ms, batch)
            .await?;
        let mut acted = due.len();
        for request in due {
            if let Err(e) = self.resolve_one(&request).await {
                tracing::warn!(request_id = %request.id, error = %e, "resolving an initiator request failed; it is due again after its lease");
            }
        }
        let untold = self
            .0
            .storage
            .unnotified_initiator_requests(now - 5_000, batch)
            .await?;
        acted += untold.len();
        for request in untold {
            self.tell_owner(&request).await;
        }
        Ok(acted)
    }

    /// Asks Transaction Status what `request` (a payout or a reversal) did, as the resolver
    /// does; the answer is applied to `request` when it comes. `None`: nothing to ask by.
    pub async fn ask_status(
        &self,
        request: &InitiatorRequest,
    ) -> Option<Result<InitiatorRequest, InitiatorError>> {
        let ask = status_question(request)?;
        Some(self.submit(RESOLVE, Some(&request.id), ask).await)
    }

    async fn resolve_one(&self, request: &InitiatorRequest) -> Result<(), InitiatorError> {
        let policy = self.0.settings.policy;
        let now = self.now_ms();
        match rules::on_due(&request.snapshot(), now, &policy) {
            DueAction::Nothing => Ok(()),
            DueAction::Apply(t) => {
                let written = self
                    .0
                    .storage
                    .update_initiator_request(&request.id, now, &|r| {
                        if r.status.is_final() || r.needs_review {
                            return None;
                        }
                        Some(InitiatorUpdate {
                            event: Some(NewMoneyOutEvent {
                                kind: t.kind.as_str().to_owned(),
                                detail: json!({"note": t.note, "result_desc": t.result_desc})
                                    .to_string(),
                            }),
                            transition: Some(t.clone()),
                            next_check_at: Some(None),
                            ..Default::default()
                        })
                    })
                    .await?;
                if let Some((r, _)) = written
                    && r.status.is_final()
                {
                    self.tell_owner(&r).await;
                }
                Ok(())
            }
            DueAction::AskStatus => {
                let attempts = request.attempts.saturating_add(1);
                let asked = self.ask_status(request).await;
                let next = rules::next_check_at(&request.snapshot(), now, attempts as u32, &policy);
                let detail = match &asked {
                    Some(Ok(q)) => json!({"status_request_id": q.id, "attempt": attempts}),
                    Some(Err(e)) => json!({"error": e.to_string(), "attempt": attempts}),
                    None => {
                        json!({"error": "nothing to ask Transaction Status by", "attempt": attempts})
                    }
                };
                self.0
                    .storage
                    .update_initiator_request(&request.id, now, &|r| {
                        if r.status.is_final() {
                            return None;
                        }
                        Some(InitiatorUpdate {
                            attempts: Some(attempts),
                            next_check_at: Some(next),
                            event: Some(NewMoneyOutEvent {
                                kind: "status_asked".into(),
                                detail: detail.to_string(),
                            }),
                            ..Default::default()
                        })
                    })
                    .await?;
                Ok(())
            }
        }
    }
}

/// The Transaction Status question that finds what `request` did: a payout by its
/// OriginatorConversationID, a reversal by the receipt it reversed.
fn status_question(request: &InitiatorRequest) -> Option<Ask> {
    let ask: Ask = serde_json::from_str(&request.params).ok()?;
    match ask {
        Ask::B2c { .. } => Some(Ask::TransactionStatus {
            receipt: None,
            originator_conversation_id: request.originator_conversation_id.clone(),
            party_a: None,
            remarks: "Payout status".into(),
        }),
        Ask::Reversal {
            receipt,
            receiver_party,
            ..
        } => Some(Ask::TransactionStatus {
            receipt: Some(receipt),
            originator_conversation_id: None,
            party_a: receiver_party,
            remarks: "Refund status".into(),
        }),
        _ => None,
    }
}

/// The request as it will be after `t` (for scheduling its next check).
fn after(r: &InitiatorRequest, t: &RequestTransition) -> mpesa_domain::RequestSnapshot {
    let mut s = r.snapshot();
    s.status = t.status;
    s.needs_review = (s.needs_review || t.hold) && !t.clear_hold;
    s
}

/// Whether `t` books Daraja's receipt on a request that moves money: then storage checks it
/// against the receipts people recorded by hand on other requests.
fn books_a_receipt(r: &InitiatorRequest, t: &RequestTransition) -> bool {
    r.kind.moves_money() && t.status == RequestStatus::Completed && t.receipt.is_some()
}

/// "payout po_…", "refund rfd_…": a request by its owner, as people know it.
fn owner_name(r: &InitiatorRequest) -> String {
    match r.owner_id.as_deref() {
        Some(owner) => format!("{} {owner}", r.purpose),
        None => format!("request {}", r.id),
    }
}

/// The admins' alert, after the owner's name for itself: Daraja's answer (`what`) for
/// `request` brings `receipt`, which a person recorded by hand on `holder`. Its first line
/// ends the email's subject.
fn receipt_in_use_text(
    request: &InitiatorRequest,
    holder: &InitiatorRequest,
    what: &str,
    receipt: &str,
) -> String {
    let details: Value = holder
        .result
        .as_deref()
        .and_then(|x| serde_json::from_str(x).ok())
        .unwrap_or(Value::Null);
    let by = details[SETTLED_BY_HAND]["by"].as_str().unwrap_or("?");
    let by = by.strip_prefix("admin:").unwrap_or(by);
    format!(
        "{what} brings receipt {receipt}, already recorded by hand by {by} on {}.\nThe {} is held for a person: nothing was booked on it. One of the two is wrong; check the M-Pesa org portal.",
        owner_name(holder),
        request.purpose,
    )
}

/// A timeline entry's detail with the transition's note, when it has one.
fn with_note(mut detail: Value, t: &RequestTransition) -> Value {
    if let Some(note) = &t.note {
        detail["note"] = json!(note);
    }
    detail
}

/// What Daraja said about a request settled by hand, for the admins' alert.
#[derive(Debug, Clone, Copy)]
struct Reported<'a> {
    completed: bool,
    result_code: Option<&'a str>,
    receipt: Option<&'a str>,
}

/// The admins' alert, after the owner's name for itself: whose settlement by hand Daraja
/// (`what`) contradicts, and how. Its first line ends the email's subject.
fn contradiction_text(r: &InitiatorRequest, what: &str, reported: Reported<'_>) -> String {
    let record: Value = r
        .result
        .as_deref()
        .and_then(|x| serde_json::from_str::<Value>(x).ok())
        .map(|d| d[SETTLED_BY_HAND].clone())
        .unwrap_or(Value::Null);
    let by = record["by"].as_str().unwrap_or("?");
    let by = by.strip_prefix("admin:").unwrap_or(by);
    let outcome = |completed: bool| if completed { "completed" } else { "failed" };
    let recorded_receipt = r
        .receipt
        .as_deref()
        .filter(|_| r.status == RequestStatus::Completed)
        .map(|x| format!(", receipt {x}"))
        .unwrap_or_default();
    let code = reported
        .result_code
        .map(|c| format!(", result code {c}"))
        .unwrap_or_default();
    let receipt = reported
        .receipt
        .map(|x| format!(", receipt {x}"))
        .unwrap_or_default();
    format!(
        "{what} contradicts the settlement recorded by {by}.\nRecorded by hand: {}{recorded_receipt}. M-Pesa: {}{code}{receipt}. Nothing was paid or booked again; check the M-Pesa org portal.",
        r.status.as_str(),
        outcome(reported.completed),
    )
}

/// A request's result details as an object (`{}` when it has none).
fn details_of(r: &InitiatorRequest) -> Value {
    r.result
        .as_deref()
        .and_then(|x| serde_json::from_str::<Value>(x).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}))
}

/// A request's result details with `key` set to `value`; what was there (who settled it by
/// hand) stays.
fn details_with(r: &InitiatorRequest, key: &str, value: Value) -> String {
    let mut details = details_of(r);
    details[key] = value;
    details.to_string()
}

/// The result details a transition that holds a request for a contradiction leaves: the answer
/// that contradicted the settlement by hand, beside it (`None`: the details do not change).
fn with_contradiction(r: &InitiatorRequest, t: &RequestTransition) -> Option<String> {
    let answer = t.contradiction.as_ref()?;
    Some(details_with(r, CONTRADICTED, json!(answer)))
}

/// The decision for a result or queue-timeout callback, given the request it names (locked).
fn decide_callback(
    initiator: &Initiator,
    request: &InitiatorRequest,
    envelope: &ResultEnvelope,
    door: CallbackDoor,
    callback_id: &str,
    now: i64,
    policy: &ResolvePolicy,
) -> (CallbackOutcome, Option<InitiatorUpdate>) {
    let snapshot = request.snapshot();
    let r = &envelope.result;
    let (outcome, details, report) = match door {
        CallbackDoor::QueueTimeout => (rules::on_queue_timeout(&snapshot), None, None),
        CallbackDoor::Result => {
            let details = result_details(request.kind, envelope);
            let receipt = details
                .as_ref()
                .and_then(|d| d.get("receipt").and_then(Value::as_str).map(str::to_owned))
                .or_else(|| r.transaction_id.clone().filter(|t| !t.trim().is_empty()));
            let report = ResultReport {
                result_code: envelope.result_code(),
                result_desc: r.result_desc.clone(),
                receipt,
                result_type: r.result_type.as_ref().map(|t| t.as_text().into_owned()),
            };
            (rules::on_result(&snapshot, &report), details, Some(report))
        }
    };
    let detail = json!({
        "callback_id": callback_id,
        "result_code": r.result_code.as_text(),
        "result_desc": r.result_desc,
        "conversation_id": r.conversation_id,
    });
    match outcome {
        // What Daraja said is kept with the entry; the details recorded with the manual
        // settlement stay (they say who settled it).
        RequestOutcome::Changed(t) if t.kind == RequestEventKind::Contradicted => {
            let mut d = detail;
            d["note"] = json!(t.note);
            d["result"] = details.unwrap_or(Value::Null);
            let reported = report.as_ref().map(|report| Reported {
                completed: report.result_code.is_success(),
                result_code: Some(report.result_code.as_str()),
                receipt: report
                    .receipt
                    .as_deref()
                    .filter(|_| report.result_code.is_success()),
            });
            let outbox = reported
                .map(|reported| {
                    initiator.contradiction_rows(request, "M-Pesa's result", reported, now)
                })
                .unwrap_or_default();
            (
                CallbackOutcome::Applied,
                Some(InitiatorUpdate {
                    event: Some(NewMoneyOutEvent {
                        kind: t.kind.as_str().to_owned(),
                        detail: d.to_string(),
                    }),
                    result: with_contradiction(request, &t),
                    next_check_at: Some(None),
                    transition: Some(t),
                    outbox,
                    ..Default::default()
                }),
            )
        }
        RequestOutcome::Changed(t) => {
            let next = rules::next_check_at(
                &after(request, &t),
                now,
                request.attempts.max(0) as u32,
                policy,
            );
            let if_receipt_held = books_a_receipt(request, &t)
                .then(|| initiator.if_receipt_held("M-Pesa's result", detail.clone(), now));
            (
                CallbackOutcome::Applied,
                Some(InitiatorUpdate {
                    event: Some(NewMoneyOutEvent {
                        kind: t.kind.as_str().to_owned(),
                        detail: with_note(detail, &t).to_string(),
                    }),
                    result: details.map(|d| d.to_string()),
                    next_check_at: Some(next),
                    transition: Some(t),
                    if_receipt_held,
                    ..Default::default()
                }),
            )
        }
        RequestOutcome::Duplicate => (CallbackOutcome::Duplicate, None),
        RequestOutcome::Unchanged(why) => {
            let mut d = detail;
            d["why_unchanged"] = json!(why);
            (
                CallbackOutcome::Ignored,
                Some(InitiatorUpdate {
                    event: Some(NewMoneyOutEvent {
                        kind: "callback_kept".into(),
                        detail: d.to_string(),
                    }),
                    ..Default::default()
                }),
            )
        }
    }
}

/// What a successful result carries, by the request's API, as JSON (read by owners).
fn result_details(kind: RequestKind, e: &ResultEnvelope) -> Option<Value> {
    let cents = |c: Option<mpesa_domain::Cents>| c.map(|c| c.0);
    match kind {
        RequestKind::B2c => e.b2c().ok().flatten().map(|p| {
            json!({
                "receipt": p.receipt,
                "amount_cents": cents(p.amount),
                "recipient_name": p.receiver_party_public_name,
                "completed_at_ms": p.completed_at_ms,
                "utility_balance_cents": cents(p.utility_account_available_funds),
                "working_balance_cents": cents(p.working_account_available_funds),
                "recipient_is_registered_customer": p.recipient_is_registered_customer,
            })
        }),
        RequestKind::Reversal => e.reversal().ok().flatten().map(|r| {
            json!({
                "receipt": r.transaction_id,
                "original_receipt": r.original_transaction_id,
                "amount_cents": cents(r.amount),
                "completed_at_ms": r.completed_at_ms,
                "credit_party": r.credit_party_public_name,
            })
        }),
        RequestKind::TransactionStatus => e.transaction_status().ok().flatten().map(|s| {
            json!({
                "receipt_no": s.receipt_no,
                "transaction_status": s.transaction_status,
                "amount_cents": cents(s.amount),
                "debit_party_name": s.debit_party_name,
                "credit_party_name": s.credit_party_name,
                "originator_conversation_id": s.originator_conversation_id,
                "conversation_id": s.conversation_id,
                "initiated_at_ms": s.initiated_at_ms,
                "finalised_at_ms": s.finalised_at_ms,
                "reason_type": s.reason_type,
            })
        }),
        RequestKind::AccountBalance => e.account_balance().ok().flatten().map(|b| {
            json!({
                "accounts": b.accounts.iter().map(|a| json!({
                    "name": a.name,
                    "currency": a.currency,
                    "current_cents": a.current.0,
                    "available_cents": a.available.0,
                })).collect::<Vec<_>>(),
                "completed_at_ms": b.completed_at_ms,
            })
        }),
    }
}

/// The built-in owner of Transaction Status requests that resolve another request: what the
/// answer found is applied to the request it was about.
struct Resolver {
    initiator: std::sync::Weak<Inner>,
}

#[async_trait]
impl InitiatorOwner for Resolver {
    async fn on_final(&self, status: &InitiatorRequest) -> Result<(), StorageError> {
        let Some(inner) = self.initiator.upgrade() else {
            return Ok(());
        };
        let initiator = Initiator(inner);
        let Some(target_id) = status.owner_id.as_deref() else {
            return Ok(());
        };
        let finding = finding_of(status);
        let now = initiator.now_ms();
        let status_id = status.id.clone();
        let written = initiator
            .0
            .storage
            .update_initiator_request(target_id, now, &|r| {
                let outcome = rules::on_status_finding(&r.snapshot(), &finding);
                let detail = json!({
                    "status_request_id": status_id,
                    "finding": format!("{finding:?}"),
                });
                match outcome {
                    RequestOutcome::Changed(t) => Some(InitiatorUpdate {
                        if_receipt_held: books_a_receipt(r, &t).then(|| {
                            initiator.if_receipt_held("Transaction Status", detail.clone(), now)
                        }),
                        event: Some(NewMoneyOutEvent {
                            kind: t.kind.as_str().to_owned(),
                            detail: with_note(detail, &t).to_string(),
                        }),
                        next_check_at: Some(None),
                        result: with_contradiction(r, &t),
                        outbox: if t.kind == RequestEventKind::Contradicted {
                            // A reversal's own receipt is not in the answer.
                            let receipt = match &finding {
                                StatusFinding::Completed { receipt, .. } => receipt.as_deref(),
                                _ => None,
                            };
                            let reported = Reported {
                                completed: true,
                                result_code: None,
                                receipt,
                            };
                            initiator.contradiction_rows(r, "Transaction Status", reported, now)
                        } else {
                            Vec::new()
                        },
                        transition: Some(t),
                        ..Default::default()
                    }),
                    RequestOutcome::Duplicate => None,
                    RequestOutcome::Unchanged(why) => Some(InitiatorUpdate {
                        event: Some(NewMoneyOutEvent {
                            kind: "status_not_settling".into(),
                            detail: {
                                let mut d = detail;
                                d["why"] = json!(why);
                                d.to_string()
                            },
                        }),
                        ..Default::default()
                    }),
                }
            })
            .await;
        match written {
            Ok(Some((target, _))) if target.status.is_final() => {
                Box::pin(initiator.tell_owner(&target)).await;
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(StorageError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// What a final Transaction Status request found.
fn finding_of(status: &InitiatorRequest) -> StatusFinding {
    let details: Option<Value> = status
        .result
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok());
    let not_found = || StatusFinding::NotFound {
        result_code: ResultCode::new(status.result_code.as_deref().unwrap_or("")),
    };
    if status.status != RequestStatus::Completed {
        return not_found();
    }
    let Some(d) = details else {
        return not_found();
    };
    let receipt = d["receipt_no"].as_str().map(str::to_owned);
    match d["transaction_status"].as_str() {
        Some(s) if s.eq_ignore_ascii_case("Completed") => StatusFinding::Completed {
            receipt,
            amount: d["amount_cents"].as_i64().map(mpesa_domain::Cents),
        },
        Some(s) if s.eq_ignore_ascii_case("Reversed") => StatusFinding::Reversed { receipt },
        _ => not_found(),
    }
}

/// Why a payout or refund (`what`) cannot be settled by hand: it is not pending, or its
/// request is not held for a person.
pub(crate) fn not_held_for_a_person(what: &str, status: &str, pending: bool) -> String {
    format!(
        "only a pending {what} held for a person can be settled by hand; this one is {status}{}",
        if pending { " and not held" } else { "" }
    )
}

/// Whether Daraja's refusal of a request that moves money may still have moved it. An HTTP 5xx
/// envelope is seen on B2C for "System internal error" and for "Duplicate
/// OriginatorConversationID" (a copy of this very request was received): failing the payout or
/// refund on it would invite paying it again, so its outcome is asked (Transaction Status), as
/// after a timeout. Only the API gateway's throttling (`500.003.02` spike arrest or busy,
/// `500.003.03` quota) is answered before anything reaches M-Pesa. Below 500, Daraja refused the
/// request itself (an invalid field, a token).
fn refusal_may_have_moved_money(request: &InitiatorRequest, error: &DarajaError) -> bool {
    const THROTTLED: &[&str] = &["500.003.02", "500.003.03"];
    request.kind.moves_money()
        && matches!(error, DarajaError::Refused { status, error_code, .. }
            if *status >= 500 && !THROTTLED.contains(&error_code.trim()))
}

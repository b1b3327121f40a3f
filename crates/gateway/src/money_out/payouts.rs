//! Payouts (B2C): the one place where the gateway sends money on its own, so the guardrails are
//! here, in one room that every door uses.
//!
//! * Off unless the B2C shortcode and the initiator are configured.
//! * `PAYOUT_MAX_AMOUNT` per payout; `PAYOUT_DAILY_LIMIT` per East Africa Time day, reserved in
//!   the database in the transaction that stores the payout (one conditional UPDATE: instances
//!   sharing the database share the limit). A failed or rejected payout gives its amount back.
//! * Above `PAYOUT_APPROVAL_ABOVE` a payout waits as `awaiting_approval` until an admin approves
//!   it — an admin other than the one who asked — or rejects it. Every action is on its timeline
//!   with the admin's name.
//! * Stored before Daraja is called, sent once with its own OriginatorConversationID; a result
//!   that never comes is found out by Transaction Status, never by paying again.

use std::sync::Arc;

use async_trait::async_trait;
use mpesa_domain::initiator::SETTLED_BY_HAND;
use mpesa_domain::{Msisdn, RequestStatus};
use mpesa_storage::{
    CreatePayoutResult, IdempotencyClaim, InitiatorRequest, MoneyOutEvent, NewMoneyOutEvent,
    NewOutboxEvent, NewPayout, Page, PageRequest, Payout, PayoutFilter, PayoutStatus, PayoutUpdate,
    SettleOwner, Storage, StorageError, StoredResponse,
};
use serde_json::{Value, json};
use url::Url;

use super::initiator::{Ask, Initiator, InitiatorOwner, not_held_for_a_person};
use super::notify::{admin_rows, dashboard_link, final_rows};
use super::receipts::parse_typed_code;
use super::refunds::{ORPHAN_MAX_AGE_MS, ORPHANS_PER_SWEEP};
use super::view::{Hold, PayoutView};
use super::{Claim, Requester, eat_day};
use crate::admin::pages::payouts::payout_href;
use crate::clock::Clock;
use crate::config::money_out::MoneyOutSettings;
use crate::ids::new_id;
use crate::outbox::message::ksh;
use crate::payments::NotificationPlan;

pub const PURPOSE: &str = "payout";
/// The admins' alert that M-Pesa contradicts a payout's settlement by hand (no webhook).
pub const CONTRADICTED: &str = "payout.contradicted";
/// The admins' alert that M-Pesa's answer for a payout brings a receipt a person recorded by
/// hand on another payout or refund: the payout is held (no webhook).
pub const RECEIPT_IN_USE: &str = "payout.receipt_in_use";

/// What the money is for; Daraja's `CommandID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutPurpose {
    Business,
    Salary,
    Promotion,
}

impl PayoutPurpose {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "business" => Some(PayoutPurpose::Business),
            "salary" => Some(PayoutPurpose::Salary),
            "promotion" => Some(PayoutPurpose::Promotion),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            PayoutPurpose::Business => "business",
            PayoutPurpose::Salary => "salary",
            PayoutPurpose::Promotion => "promotion",
        }
    }
    pub fn command(self) -> &'static str {
        match self {
            PayoutPurpose::Business => "BusinessPayment",
            PayoutPurpose::Salary => "SalaryPayment",
            PayoutPurpose::Promotion => "PromotionPayment",
        }
    }
    pub fn from_command(command: &str) -> Self {
        match command {
            "SalaryPayment" => PayoutPurpose::Salary,
            "PromotionPayment" => PayoutPurpose::Promotion,
            _ => PayoutPurpose::Business,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutRequest {
    pub phone: Msisdn,
    pub amount: i64,
    pub purpose: PayoutPurpose,
    pub remarks: String,
    pub occasion: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PayoutError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("no such payout")]
    NotFound,
    /// A 422 naming the field.
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(
        "payouts are off: set MPESA_B2C_SHORT_CODE, MPESA_INITIATOR_NAME and MPESA_INITIATOR_PASSWORD"
    )]
    Disabled,
    /// A clear 409 (approve what does not wait, approve your own request…).
    #[error("{0}")]
    Refused(String),
    #[error("this Idempotency-Key was used with another request body")]
    KeyReused,
    #[error("a request with this Idempotency-Key is still being processed")]
    InProgress { id: String },
}

pub enum PayoutCreated {
    Created(Box<Payout>),
    Replay(StoredResponse),
}

#[derive(Clone)]
pub struct Payouts {
    storage: Arc<dyn Storage>,
    reads: PayoutReads,
    initiator: Initiator,
    settings: MoneyOutSettings,
    plan: NotificationPlan,
}

impl Payouts {
    pub fn new(
        storage: Arc<dyn Storage>,
        initiator: Initiator,
        settings: MoneyOutSettings,
        plan: NotificationPlan,
        public_url: Url,
    ) -> Self {
        initiator.register_owner(
            PURPOSE,
            Arc::new(PayoutOwner {
                storage: storage.clone(),
                plan: plan.clone(),
                clock: initiator.clock().clone(),
                public_url,
            }),
        );
        Payouts {
            reads: PayoutReads::new(storage.clone()),
            storage,
            initiator,
            settings,
            plan,
        }
    }

    pub fn enabled(&self) -> bool {
        self.settings.b2c_short_code.is_some() && self.initiator.configured()
    }

    pub fn settings(&self) -> &MoneyOutSettings {
        &self.settings
    }

    /// The read operations (one payout, its view and story, lists).
    pub fn reads(&self) -> &PayoutReads {
        &self.reads
    }

    /// Checks the guardrails, stores the payout (reserving its amount in the day's limit), and
    /// sends it unless it waits for approval.
    pub async fn create(
        &self,
        request: PayoutRequest,
        by: &Requester,
        claim: Option<Claim>,
    ) -> Result<PayoutCreated, PayoutError> {
        if !self.enabled() {
            return Err(PayoutError::Disabled);
        }
        let invalid =
            |field: &'static str, message: String| PayoutError::Invalid { field, message };
        if request.amount < 10 {
            return Err(invalid(
                "amount",
                "at least 10 shillings (M-Pesa's B2C minimum)".into(),
            ));
        }
        if request.amount > self.settings.payout_max_amount {
            return Err(invalid(
                "amount",
                format!(
                    "above PAYOUT_MAX_AMOUNT ({} shillings)",
                    self.settings.payout_max_amount
                ),
            ));
        }
        let remarks = request.remarks.trim();
        if !(2..=100).contains(&remarks.chars().count()) || remarks.chars().any(char::is_control) {
            return Err(invalid("remarks", "2 to 100 characters".into()));
        }
        let occasion = request
            .occasion
            .as_deref()
            .map(str::trim)
            .filter(|o| !o.is_empty());
        if occasion.is_some_and(|o| o.chars().count() > 100 || o.chars().any(char::is_control)) {
            return Err(invalid("occasion", "at most 100 characters".into()));
        }
        let now = self.initiator.clock().now_ms();
        let awaits = self
            .settings
            .payout_approval_above
            .is_some_and(|above| request.amount > above);
        // Keys live in the API key's space; a dashboard form's key in its admin's.
        let claim = claim.map(|(key, request_hash)| IdempotencyClaim {
            api_key_id: by.api_key_id.clone().unwrap_or_else(|| by.name.clone()),
            key,
            request_hash,
            created_at: now,
        });
        let created = self
            .storage
            .create_payout(
                NewPayout {
                    id: new_id("po"),
                    status: if awaits {
                        PayoutStatus::AwaitingApproval
                    } else {
                        PayoutStatus::Pending
                    },
                    phone: request.phone.as_str().to_owned(),
                    amount: request.amount,
                    command: request.purpose.command().to_owned(),
                    remarks: remarks.to_owned(),
                    occasion: occasion.map(str::to_owned),
                    requested_by: by.name.clone(),
                    source: by.source.to_owned(),
                    api_key_id: by.api_key_id.clone(),
                    eat_day: eat_day(now),
                    created_at: now,
                },
                claim,
                self.settings.payout_daily_limit,
            )
            .await?;
        let payout = match created {
            CreatePayoutResult::Created(p) => *p,
            CreatePayoutResult::Replay(stored) => return Ok(PayoutCreated::Replay(stored)),
            CreatePayoutResult::KeyReused => return Err(PayoutError::KeyReused),
            CreatePayoutResult::InProgress { id } => return Err(PayoutError::InProgress { id }),
            CreatePayoutResult::OverDailyLimit { reserved, limit } => {
                return Err(invalid(
                    "amount",
                    format!(
                        "over PAYOUT_DAILY_LIMIT: {} of {} already paid out or reserved today (East Africa Time)",
                        ksh(reserved),
                        ksh(limit)
                    ),
                ));
            }
        };
        tracing::info!(payout_id = %payout.id, phone = %request.phone.masked(), amount = payout.amount, status = payout.status.as_str(), "payout stored");
        if payout.status == PayoutStatus::Pending {
            return Ok(PayoutCreated::Created(Box::new(self.send(payout).await?)));
        }
        Ok(PayoutCreated::Created(Box::new(payout)))
    }

    /// [`Payouts::store_and_send`] on its own task: a caller that goes away (a closed
    /// connection, the request's timeout) must not leave a pending payout with no request behind
    /// it, which nothing would ever send and whose amount would stay reserved.
    async fn send(&self, payout: Payout) -> Result<Payout, PayoutError> {
        let this = self.clone();
        tokio::spawn(async move { this.store_and_send(payout).await })
            .await
            .map_err(|failed| {
                PayoutError::Storage(StorageError::Database(format!(
                    "the payout's task failed: {failed}"
                )))
            })?
    }

    /// Records a B2C request's id on a pending payout that has none, stores the request under
    /// that id, then sends it once. As for refunds, the id is the gate: only who records it
    /// stores it, and only who stores it (the request's primary key) sends it, so
    /// [`Payouts::send_orphans`] can send a payout its process left behind with no chance of
    /// two. (B2C's OriginatorConversationID is the request's id: Daraja refuses a repeat too.)
    async fn store_and_send(&self, payout: Payout) -> Result<Payout, PayoutError> {
        let request_id = match &payout.request_id {
            // Recorded, and never stored: its process stopped in between.
            Some(id) => id.clone(),
            None => {
                let id = Initiator::new_request_id();
                let recorded = self
                    .storage
                    .update_payout(&payout.id, self.initiator.clock().now_ms(), &|p| {
                        (p.status == PayoutStatus::Pending && p.request_id.is_none()).then(|| {
                            PayoutUpdate {
                                request_id: Some(id.clone()),
                                ..Default::default()
                            }
                        })
                    })
                    .await?;
                if recorded.is_none() {
                    // Another party recorded one: it stores and sends it.
                    return self.reads.get(&payout.id).await;
                }
                id
            }
        };
        let ask = Ask::B2c {
            command: payout.command.clone(),
            amount: payout.amount,
            phone: payout.phone.clone(),
            remarks: payout.remarks.clone(),
            occasion: payout.occasion.clone(),
        };
        let stored = match self
            .initiator
            .store_recorded(&request_id, PURPOSE, Some(&payout.id), &ask)
            .await
        {
            Ok(Some(r)) => r,
            // Stored by another party, which sends it.
            Ok(None) => return self.reads.get(&payout.id).await,
            Err(e) => {
                // Nothing went to Daraja: the sweep sends it later.
                tracing::error!(payout_id = %payout.id, error = %e, "the payout's B2C request could not be stored");
                return self.reads.get(&payout.id).await;
            }
        };
        // On the payout's timeline once stored: a recorded id alone was never sent.
        let detail = json!({
            "request_id": request_id,
            "originator_conversation_id": stored.originator_conversation_id,
        })
        .to_string();
        self.storage
            .update_payout(&payout.id, self.initiator.clock().now_ms(), &|p| {
                (p.request_id.as_deref() == Some(request_id.as_str())).then(|| PayoutUpdate {
                    event: Some(NewMoneyOutEvent {
                        kind: "sent".into(),
                        detail: detail.clone(),
                    }),
                    ..Default::default()
                })
            })
            .await?;
        if let Err(e) = self.initiator.send(stored, ask).await {
            tracing::error!(payout_id = %payout.id, error = %e, "the payout's B2C request could not be sent");
        }
        self.reads.get(&payout.id).await
    }

    /// Sends the B2C request of each pending payout unchanged for `grace_ms` (and for less than a
    /// day) with none stored: a process stopped (or could not store it) between the payout's commit (or approval) and
    /// its request. Nothing was sent for it: a request is stored before it is sent. How many
    /// were found.
    pub async fn send_orphans(&self, grace_ms: i64) -> Result<usize, PayoutError> {
        if !self.initiator.configured() {
            return Ok(0);
        }
        let now = self.initiator.clock().now_ms();
        let orphans = self
            .storage
            .payouts_without_request(
                PURPOSE,
                (now - ORPHAN_MAX_AGE_MS, now - grace_ms),
                ORPHANS_PER_SWEEP,
            )
            .await?;
        let found = orphans.len();
        for payout in orphans {
            tracing::warn!(payout_id = %payout.id, "a pending payout has no B2C request stored; sending it now");
            let id = payout.id.clone();
            if let Err(e) = self.store_and_send(payout).await {
                tracing::warn!(payout_id = %id, error = %e, "the payout's B2C request could not be sent");
            }
        }
        Ok(found)
    }

    /// An admin approves a payout that waits: not the admin who asked for it.
    pub async fn approve(&self, id: &str, admin: &str) -> Result<Payout, PayoutError> {
        let by = format!("admin:{admin}");
        let asked = self.reads.get(id).await?;
        let asker = super::asking_admin(
            self.storage.as_ref(),
            &asked.requested_by,
            asked.api_key_id.as_deref(),
        )
        .await?;
        let now = self.initiator.clock().now_ms();
        // Why the locked row refused (the decision may run again on a conflict: last one wins).
        let refusal = std::sync::Mutex::new(None::<String>);
        let written = self
            .storage
            .update_payout(id, now, &|p| {
                let why = if p.status != PayoutStatus::AwaitingApproval {
                    Some(format!(
                        "the payout is {}, not awaiting approval",
                        p.status.as_str()
                    ))
                } else if p.requested_by == by {
                    Some("an admin cannot approve their own payout: another admin must".into())
                } else if asker.as_deref() == Some(by.as_str()) {
                    Some(
                        "an admin cannot approve a payout asked for with an API key they made: \
                         another admin must"
                            .into(),
                    )
                } else {
                    None
                };
                if let Some(why) = why {
                    *refusal.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                    return None;
                }
                Some(PayoutUpdate {
                    status: Some(PayoutStatus::Pending),
                    decided_by: Some(by.clone()),
                    event: Some(NewMoneyOutEvent {
                        kind: "approved".into(),
                        detail: json!({ "by": by }).to_string(),
                    }),
                    ..Default::default()
                })
            })
            .await
            .map_err(not_found)?;
        match written {
            Some((payout, _)) => {
                tracing::info!(payout_id = %payout.id, admin, "payout approved");
                self.send(payout).await
            }
            None => Err(PayoutError::Refused(
                refusal
                    .into_inner()
                    .unwrap_or_else(|e| e.into_inner())
                    .unwrap_or_else(|| "the payout cannot be approved".into()),
            )),
        }
    }

    /// An admin rejects a payout that waits; its amount goes back to the day's limit.
    pub async fn reject(&self, id: &str, admin: &str, note: &str) -> Result<Payout, PayoutError> {
        let by = format!("admin:{admin}");
        let note = note.trim().chars().take(500).collect::<String>();
        let written = self
            .storage
            .update_payout(id, self.initiator.clock().now_ms(), &|p| {
                (p.status == PayoutStatus::AwaitingApproval).then(|| PayoutUpdate {
                    status: Some(PayoutStatus::Rejected),
                    decided_by: Some(by.clone()),
                    decision_note: Some(note.clone()),
                    release_reservation: true,
                    event: Some(NewMoneyOutEvent {
                        kind: "rejected".into(),
                        detail: json!({ "by": by, "note": note }).to_string(),
                    }),
                    ..Default::default()
                })
            })
            .await
            .map_err(not_found)?;
        match written {
            Some((p, _)) => Ok(p),
            None => Err(PayoutError::Refused(
                "only a payout awaiting approval can be rejected".into(),
            )),
        }
    }

    /// A person records what became of a payout held for them (Safaricom never answered and
    /// Transaction Status found nothing): paid, with the M-Pesa receipt they saw, or not paid,
    /// with a note. Not by the admin who asked for it. The payout is final as by Daraja's
    /// result (its webhook, its alerts; a failed one gives its amount back to the day).
    pub async fn settle_by_hand(
        &self,
        id: &str,
        outcome: HandOutcome,
        note: &str,
        admin: &str,
    ) -> Result<Payout, PayoutError> {
        let by = format!("admin:{admin}");
        let note = check_note(note).map_err(|message| PayoutError::Invalid {
            field: "note",
            message,
        })?;
        let receipt = outcome
            .receipt()
            .map(|r| {
                parse_typed_code(r).map_err(|e| PayoutError::Invalid {
                    field: "receipt",
                    message: e.to_string(),
                })
            })
            .transpose()?;
        let p = self.reads.get(id).await?;
        let asker = super::asking_admin(
            self.storage.as_ref(),
            &p.requested_by,
            p.api_key_id.as_deref(),
        )
        .await?;
        if asker.as_deref() == Some(by.as_str()) {
            return Err(PayoutError::Refused(
                "an admin cannot record the outcome of their own payout (or one asked for with an \
                 API key they made): another admin must"
                    .into(),
            ));
        }
        let pending = p.status == PayoutStatus::Pending;
        let held = self.initiator.held_open(p.request_id.as_deref()).await?;
        let Some(request) = held.filter(|_| pending) else {
            return Err(PayoutError::Refused(not_held_for_a_person(
                "payout",
                p.status.as_str(),
                pending,
            )));
        };
        let now = self.initiator.clock().now_ms();
        let plan = &self.plan;
        let decide = |r: &InitiatorRequest, p: &Payout| final_update(plan, r, now, p);
        let settled = self
            .initiator
            .settle_by_hand(
                &request.id,
                outcome.completed(),
                receipt.as_deref(),
                &note,
                &by,
                None,
                SettleOwner::Payout(&decide),
            )
            .await
            .map_err(|e| match e {
                StorageError::Conflict(why) => PayoutError::Refused(hand_conflict(&why)),
                other => other.into(),
            })?;
        match settled {
            Ok(_) => {
                tracing::info!(payout_id = %p.id, admin, outcome = outcome.as_str(), "payout settled by hand");
                self.reads.get(id).await
            }
            Err(why) => Err(PayoutError::Refused(why)),
        }
    }

    /// A person acknowledges, with a note, that M-Pesa's answer contradicts the outcome
    /// recorded by hand on this payout: the hold is lifted and the note and their name go on
    /// its timeline. Nothing else changes (status, receipt, amount; no webhook) and nothing is
    /// sent to Daraja. Refused unless the payout is held after a contradiction, and the second
    /// time.
    pub async fn acknowledge(
        &self,
        id: &str,
        note: &str,
        admin: &str,
    ) -> Result<Payout, PayoutError> {
        let note = check_note(note).map_err(|message| PayoutError::Invalid {
            field: "note",
            message,
        })?;
        let p = self.reads.get(id).await?;
        let event = acknowledged_event("acknowledged", admin, &note);
        let decide = |_: &InitiatorRequest, _: &Payout| {
            Some(PayoutUpdate {
                event: Some(event.clone()),
                ..Default::default()
            })
        };
        self.initiator
            .acknowledge(
                p.request_id.as_deref(),
                &note,
                admin,
                SettleOwner::Payout(&decide),
            )
            .await?
            .map_err(PayoutError::Refused)?;
        tracing::info!(payout_id = %p.id, admin, "contradiction acknowledged");
        self.reads.get(id).await
    }
}

/// The owner's timeline entry (`kind`) of a contradiction `admin` acknowledged: a payout's, a
/// refund's (also on its payment's timeline).
pub fn acknowledged_event(kind: &str, admin: &str, note: &str) -> NewMoneyOutEvent {
    NewMoneyOutEvent {
        kind: kind.into(),
        detail: json!({ "by": format!("admin:{admin}"), "note": note }).to_string(),
    }
}

/// The payouts' read operations. They need only the database, so the command line reads payouts
/// through them without Daraja credentials; [`Payouts::reads`] hands the service's out.
#[derive(Clone)]
pub struct PayoutReads {
    storage: Arc<dyn Storage>,
}

impl PayoutReads {
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        PayoutReads { storage }
    }

    pub async fn get(&self, id: &str) -> Result<Payout, PayoutError> {
        self.storage
            .get_payout(id)
            .await?
            .ok_or(PayoutError::NotFound)
    }

    /// The payout with the state of its Daraja request.
    pub async fn view(&self, id: &str) -> Result<PayoutView, PayoutError> {
        let p = self.get(id).await?;
        let request = super::request_of(self.storage.as_ref(), p.request_id.as_deref()).await?;
        Ok(PayoutView::new(&p, request.as_ref()))
    }

    /// The admin the payout counts as asked for by (its requester, or the maker of the API key
    /// it was asked with): its page offers them neither Approve nor Record the outcome.
    pub async fn asked_by(&self, payout: &Payout) -> Result<Option<String>, PayoutError> {
        Ok(super::asking_admin(
            self.storage.as_ref(),
            &payout.requested_by,
            payout.api_key_id.as_deref(),
        )
        .await?)
    }

    /// Why the payout is held for a person, if it is, and so what its page offers.
    pub async fn hold(&self, payout: &Payout) -> Result<Hold, PayoutError> {
        Ok(Hold::of(
            super::request_of(self.storage.as_ref(), payout.request_id.as_deref())
                .await?
                .as_ref(),
        ))
    }

    pub async fn list(
        &self,
        filter: &PayoutFilter,
        page: &PageRequest,
    ) -> Result<Page<Payout>, PayoutError> {
        Ok(self.storage.list_payouts(filter, page).await?)
    }

    /// The total of the payouts awaiting approval, in cents.
    pub async fn awaiting_approval_total(&self) -> Result<i64, StorageError> {
        self.storage.payouts_awaiting_approval_total().await
    }

    /// A payout's story: its own timeline entries (`"payout"`), its B2C request's
    /// (`"request"`), and each Transaction Status question asked about that request
    /// (`"status"`), in that order, unsorted.
    pub async fn story(
        &self,
        payout: &Payout,
    ) -> Result<Vec<(MoneyOutEvent, &'static str)>, StorageError> {
        let mut events: Vec<(MoneyOutEvent, &'static str)> = self
            .storage
            .money_out_events(&payout.id)
            .await?
            .into_iter()
            .map(|e| (e, "payout"))
            .collect();
        if let Some(request_id) = &payout.request_id {
            events.extend(
                self.storage
                    .money_out_events(request_id)
                    .await?
                    .into_iter()
                    .map(|e| (e, "request")),
            );
            for question in self
                .storage
                .initiator_requests_for(crate::money_out::initiator::RESOLVE, request_id)
                .await?
            {
                events.extend(
                    self.storage
                        .money_out_events(&question.id)
                        .await?
                        .into_iter()
                        .map(|e| (e, "status")),
                );
            }
        }
        Ok(events)
    }
}

/// What a person found out about a payout or refund held for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandOutcome {
    /// It went through: the M-Pesa receipt they saw.
    Completed { receipt: String },
    /// It did not.
    Failed,
}

impl HandOutcome {
    pub fn completed(&self) -> bool {
        matches!(self, HandOutcome::Completed { .. })
    }
    pub fn receipt(&self) -> Option<&str> {
        match self {
            HandOutcome::Completed { receipt } => Some(receipt),
            HandOutcome::Failed => None,
        }
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            HandOutcome::Completed { .. } => "completed",
            HandOutcome::Failed => "failed",
        }
    }
}

/// The most a note on a decision may hold.
pub const MAX_NOTE_CHARS: usize = 500;

/// A person's note, trimmed: required, at most [`MAX_NOTE_CHARS`].
pub fn check_note(note: &str) -> Result<String, String> {
    let note = note.trim();
    if note.is_empty() {
        return Err("a note saying what was found is required".into());
    }
    if note.chars().count() > MAX_NOTE_CHARS || note.chars().any(|c| c.is_control() && c != '\n') {
        return Err(format!("at most {MAX_NOTE_CHARS} characters"));
    }
    Ok(note.to_owned())
}

/// What storage's refusal of a settlement by hand means to the person.
pub fn hand_conflict(why: &str) -> String {
    match why.strip_prefix("receipt_in_use: ") {
        Some(rest) => format!("{rest} (a receipt is recorded once): check it"),
        None => why.to_owned(),
    }
}

fn not_found(e: StorageError) -> PayoutError {
    match e {
        StorageError::NotFound => PayoutError::NotFound,
        other => other.into(),
    }
}

/// The admin's alert when a payout is final (Telegram and email).
pub fn payout_alert(
    p: &Payout,
    request: &InitiatorRequest,
    recipient_name: Option<&str>,
    completed: bool,
) -> String {
    if completed {
        format!(
            "Payout completed: {} to {} (receipt {}).\nPayout {}",
            ksh(p.amount),
            recipient_name.unwrap_or(&p.phone),
            request.receipt.as_deref().unwrap_or("?"),
            p.id
        )
    } else {
        format!(
            "Payout failed: {} to {}, {} ({}).\nPayout {}",
            ksh(p.amount),
            p.phone,
            request.result_desc.as_deref().unwrap_or("?"),
            request.result_code.as_deref().unwrap_or("?"),
            p.id
        )
    }
}

/// Told when a payout's B2C request is final: the payout follows, with its webhook.
struct PayoutOwner {
    storage: Arc<dyn Storage>,
    plan: NotificationPlan,
    clock: Clock,
    /// Where the dashboard is, for the alerts' links.
    public_url: Url,
}

/// What a payout becomes when its B2C request is final (by Daraja or by a person): its final
/// state, its timeline entry and its webhook and alerts. One path for both. `None` once final.
fn final_update(
    plan: &NotificationPlan,
    request: &InitiatorRequest,
    now: i64,
    p: &Payout,
) -> Option<PayoutUpdate> {
    if p.status != PayoutStatus::Pending {
        return None; // final once
    }
    if p.request_id.as_deref().is_some_and(|id| id != request.id) {
        return None; // not the request recorded on the payout
    }
    let completed = request.status == RequestStatus::Completed;
    let details: Value = request
        .result
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or(Value::Null);
    let recipient_name = details["recipient_name"].as_str().map(str::to_owned);
    let utility = details["utility_balance_cents"].as_i64();
    let status = if completed {
        PayoutStatus::Completed
    } else {
        PayoutStatus::Failed
    };
    let mut after = p.clone();
    after.status = status;
    after.receipt = request.receipt.clone();
    after.recipient_name = recipient_name.clone();
    after.utility_balance_cents = utility;
    after.result_code = request.result_code.clone();
    after.result_desc = request.result_desc.clone();
    after.finalized_at = Some(now);
    after.updated_at = now;
    let view = PayoutView::new(&after, Some(request));
    let event_type = if completed {
        "payout.completed"
    } else {
        "payout.failed"
    };
    let admin_text = payout_alert(p, request, recipient_name.as_deref(), completed);
    let data = serde_json::to_value(&view).unwrap_or_default();
    let mut detail = json!({
        "request_id": request.id,
        "result_code": request.result_code,
        "result_desc": request.result_desc,
        "receipt": request.receipt,
    });
    // Settled by a person: the entry names them and keeps their note.
    if let Some(hand) = details.get(SETTLED_BY_HAND) {
        detail["by"] = hand["by"].clone();
        detail["note"] = hand["note"].clone();
    }
    Some(PayoutUpdate {
        status: Some(status),
        request_id: Some(request.id.clone()),
        receipt: request.receipt.clone(),
        recipient_name: recipient_name.clone(),
        utility_balance_cents: utility,
        result_code: request.result_code.clone(),
        result_desc: request.result_desc.clone(),
        // No money moved: the day's limit gets it back.
        release_reservation: !completed,
        event: Some(NewMoneyOutEvent {
            kind: if completed { "completed" } else { "failed" }.into(),
            detail: detail.to_string(),
        }),
        outbox: final_rows(plan, event_type, &p.id, None, &data, &admin_text, now),
        ..Default::default()
    })
}

#[async_trait]
impl InitiatorOwner for PayoutOwner {
    async fn on_final(&self, request: &InitiatorRequest) -> Result<(), StorageError> {
        let Some(payout_id) = request.owner_id.as_deref() else {
            return Ok(());
        };
        let now = self.clock.now_ms();
        let written = self
            .storage
            .update_payout(payout_id, now, &|p| {
                final_update(&self.plan, request, now, p)
            })
            .await;
        match written {
            Ok(_) | Err(StorageError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn contradiction_alert(
        &self,
        request: &InitiatorRequest,
        text: &str,
        now: i64,
    ) -> Vec<NewOutboxEvent> {
        self.admin_alert(CONTRADICTED, request, text, now)
    }

    fn receipt_in_use_alert(
        &self,
        request: &InitiatorRequest,
        text: &str,
        now: i64,
    ) -> Vec<NewOutboxEvent> {
        self.admin_alert(RECEIPT_IN_USE, request, text, now)
    }
}

impl PayoutOwner {
    /// The admins' alert (`event_type`) about the payout of `request`: its id, `text`, and the
    /// address of its dashboard page.
    fn admin_alert(
        &self,
        event_type: &str,
        request: &InitiatorRequest,
        text: &str,
        now: i64,
    ) -> Vec<NewOutboxEvent> {
        let Some(payout_id) = request.owner_id.as_deref() else {
            return Vec::new();
        };
        let text = format!(
            "Payout {payout_id}: {text}\nThe payout: {}",
            dashboard_link(&self.public_url, &payout_href(payout_id))
        );
        admin_rows(&self.plan, event_type, payout_id, None, &text, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mpesa_domain::RequestKind;

    #[test]
    fn the_admins_alert_names_the_recipient_and_the_receipt_or_the_code() {
        let payout = Payout {
            id: "po_1".into(),
            status: PayoutStatus::Pending,
            phone: "254708374149".into(),
            amount: 12_500,
            command: "SalaryPayment".into(),
            remarks: "March".into(),
            occasion: None,
            requested_by: "api:shop".into(),
            source: "api".into(),
            api_key_id: None,
            decided_by: None,
            decided_at: None,
            decision_note: None,
            request_id: None,
            receipt: None,
            recipient_name: None,
            utility_balance_cents: None,
            result_code: None,
            result_desc: None,
            eat_day: 0,
            created_at: 0,
            updated_at: 0,
            finalized_at: None,
            version: 1,
        };
        let request = |receipt: Option<&str>, code: &str, desc: &str| InitiatorRequest {
            id: "ireq_1".into(),
            kind: RequestKind::B2c,
            purpose: PURPOSE.into(),
            owner_id: Some("po_1".into()),
            originator_conversation_id: Some("ireq_1".into()),
            conversation_id: None,
            status: RequestStatus::Completed,
            params: "{}".into(),
            result_code: Some(code.into()),
            result_desc: Some(desc.into()),
            receipt: receipt.map(str::to_owned),
            result: None,
            needs_review: false,
            attempts: 0,
            next_check_at: None,
            owner_notified_at: None,
            created_at: 0,
            updated_at: 0,
            finalized_at: None,
            version: 1,
        };
        let paid = request(Some("SGB2PAID01"), "0", "OK");
        assert_eq!(
            payout_alert(&payout, &paid, Some("254708374149 - JANE DOE"), true),
            "Payout completed: KSh 12,500 to 254708374149 - JANE DOE (receipt SGB2PAID01).\nPayout po_1"
        );
        assert_eq!(
            payout_alert(&payout, &paid, None, true),
            "Payout completed: KSh 12,500 to 254708374149 (receipt SGB2PAID01).\nPayout po_1",
            "without Safaricom's name, the number"
        );
        assert_eq!(
            payout_alert(
                &payout,
                &request(
                    None,
                    "2040",
                    "Credit Party customer type can't be supported by the service."
                ),
                None,
                false
            ),
            "Payout failed: KSh 12,500 to 254708374149, Credit Party customer type can't be supported by the service. (2040).\nPayout po_1"
        );
    }
}

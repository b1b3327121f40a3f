//! Refunds: an M-Pesa Reversal of a whole completed payment, requested once.
//!
//! A refund is stored (`pending`, with its idempotency key) in the transaction that checks the
//! payment — locked — may be refunded: it is `completed`, has a receipt, and no other refund of
//! it is pending or done. Then one Reversal is sent through the initiator layer; its result (or
//! Transaction Status, when the result does not come) makes the refund `completed` or `failed`,
//! in the transaction that writes the timeline entries and the webhooks.

use std::sync::Arc;

use async_trait::async_trait;
use mpesa_domain::PaymentStatus;
use mpesa_domain::initiator::SETTLED_BY_HAND;
use mpesa_storage::{
    CreateRefundResult, IdempotencyClaim, InitiatorRequest, NewMoneyOutEvent, NewOutboxEvent,
    NewRefund, Payment, Refund, RefundRefusal, RefundStatus, RefundUpdate, SettleOwner, Storage,
    StorageError, StoredResponse,
};
use serde_json::{Value, json};
use url::Url;

use super::initiator::{Ask, Initiator, InitiatorError, InitiatorOwner, not_held_for_a_person};
use super::notify::{admin_rows, dashboard_link, final_rows, refund_customer_rows};
use super::payouts::{HandOutcome, acknowledged_event, check_note, hand_conflict};
use super::receipts::parse_typed_code;
use super::view::{Hold, RefundView};
use super::{Claim, Requester};
use crate::admin::pages::payment_href;
use crate::clock::Clock;
use crate::ids::new_id;
use crate::outbox::message::ksh;
use crate::payments::NotificationPlan;

pub const PURPOSE: &str = "refund";
/// How many orphaned refunds (or payouts) one sweep sends.
pub(crate) const ORPHANS_PER_SWEEP: u32 = 20;
/// Refunds (and payouts) left without their request longer than this are not sent by the sweep:
/// a person may have paid or reversed them by hand meanwhile (before the sweep existed, nothing
/// sent them), and money going out days late is a person's decision.
pub(crate) const ORPHAN_MAX_AGE_MS: i64 = 24 * 60 * 60 * 1000;
/// The admins' alert that M-Pesa contradicts a refund's settlement by hand (no webhook).
pub const CONTRADICTED: &str = "refund.contradicted";
/// The admins' alert that M-Pesa's answer for a refund brings a receipt a person recorded by
/// hand on another refund or payout: the refund is held (no webhook).
pub const RECEIPT_IN_USE: &str = "refund.receipt_in_use";

#[derive(Debug, thiserror::Error)]
pub enum RefundError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Initiator(InitiatorError),
    #[error("no such payment")]
    PaymentNotFound,
    #[error("no such refund")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
    /// A clear 409: not completed, refunded already, or a refund in flight.
    #[error("{0}")]
    Refused(String),
    #[error("this Idempotency-Key was used with another request body")]
    KeyReused,
    #[error("a request with this Idempotency-Key is still being processed")]
    InProgress { id: String },
    #[error("refunds need the initiator (MPESA_INITIATOR_NAME and MPESA_INITIATOR_PASSWORD)")]
    NotConfigured,
}

/// What a refund request led to.
pub enum RefundCreated {
    Created(Box<Refund>),
    /// The answer to the first request with this Idempotency-Key.
    Replay(StoredResponse),
}

#[derive(Clone)]
pub struct Refunds {
    storage: Arc<dyn Storage>,
    initiator: Initiator,
    /// The shortcode that received STK payments (Reversal's `ReceiverParty` for a payment that
    /// does not name its own).
    receiver_party: String,
    plan: NotificationPlan,
}

/// Whether a payment may be refunded, given its refund under way or done (a pure rule; storage
/// runs it on the locked rows).
pub fn refund_refusal(payment: &Payment, active: Option<&Refund>) -> Option<RefundRefusal> {
    if payment.status != PaymentStatus::Completed {
        return Some(RefundRefusal::NotRefundable(format!(
            "only a completed payment can be refunded; this one is {}",
            payment.status.as_str()
        )));
    }
    if payment.mpesa_receipt_number.is_none() {
        return Some(RefundRefusal::NotRefundable(
            "the payment has no M-Pesa receipt to reverse".into(),
        ));
    }
    active.map(|r| RefundRefusal::AlreadyRefunded {
        refund_id: r.id.clone(),
        status: r.status,
    })
}

impl Refunds {
    pub fn new(
        storage: Arc<dyn Storage>,
        initiator: Initiator,
        receiver_party: String,
        plan: NotificationPlan,
        public_url: Url,
    ) -> Self {
        initiator.register_owner(
            PURPOSE,
            Arc::new(RefundOwner {
                storage: storage.clone(),
                plan: plan.clone(),
                clock: initiator.clock().clone(),
                public_url,
            }),
        );
        Refunds {
            storage,
            initiator,
            receiver_party,
            plan,
        }
    }

    /// Refunds a payment: stored first, then one Reversal.
    pub async fn request(
        &self,
        payment_id: &str,
        reason: &str,
        by: &Requester,
        claim: Option<Claim>,
    ) -> Result<RefundCreated, RefundError> {
        let reason = reason.trim();
        let chars = reason.chars().count();
        if !(2..=100).contains(&chars) || reason.chars().any(char::is_control) {
            return Err(RefundError::Invalid(
                "reason: 2 to 100 characters, no control characters".into(),
            ));
        }
        if !self.initiator.configured() {
            return Err(RefundError::NotConfigured);
        }
        let now = self.initiator.clock().now_ms();
        let id = new_id("rfd");
        // Keys live in the API key's space; a dashboard form's key in its admin's.
        let claim = claim.map(|(key, request_hash)| IdempotencyClaim {
            api_key_id: by.api_key_id.clone().unwrap_or_else(|| by.name.clone()),
            key,
            request_hash,
            created_at: now,
        });
        let created = self
            .storage
            .create_refund(
                NewRefund {
                    id: id.clone(),
                    payment_id: payment_id.to_owned(),
                    reason: reason.to_owned(),
                    requested_by: by.name.clone(),
                    source: by.source.to_owned(),
                    api_key_id: by.api_key_id.clone(),
                    created_at: now,
                },
                claim,
                &|payment, active| match refund_refusal(payment, active) {
                    Some(refusal) => Err(refusal),
                    None => Ok((
                        payment.amount.shillings(),
                        payment.mpesa_receipt_number.clone().unwrap_or_default(),
                    )),
                },
            )
            .await?;
        let refund = match created {
            CreateRefundResult::Created(r) => *r,
            CreateRefundResult::Replay(stored) => return Ok(RefundCreated::Replay(stored)),
            CreateRefundResult::KeyReused => return Err(RefundError::KeyReused),
            CreateRefundResult::InProgress { id } => return Err(RefundError::InProgress { id }),
            CreateRefundResult::Refused(RefundRefusal::PaymentNotFound) => {
                return Err(RefundError::PaymentNotFound);
            }
            CreateRefundResult::Refused(RefundRefusal::NotRefundable(why)) => {
                return Err(RefundError::Refused(why));
            }
            CreateRefundResult::Refused(RefundRefusal::AlreadyRefunded { refund_id, status }) => {
                return Err(RefundError::Refused(match status {
                    RefundStatus::Completed => {
                        format!("the payment is already refunded ({refund_id})")
                    }
                    _ => format!("a refund of this payment is in flight ({refund_id})"),
                }));
            }
        };
        // From here on its own task: a caller that goes away (a closed connection, the
        // request's timeout) must not leave a refund pending with no request behind it, which
        // nothing would ever send, and which would refuse every later refund of the payment.
        let this = self.clone();
        let refund = tokio::spawn(async move { this.send_created(refund).await })
            .await
            .map_err(|failed| {
                RefundError::Storage(StorageError::Database(format!(
                    "the refund's task failed: {failed}"
                )))
            })??;
        Ok(RefundCreated::Created(Box::new(refund)))
    }

    /// Records a Reversal's id on a pending refund that has none, stores the Reversal under that
    /// id, and sends it once; the refund as it then is. Recording the id first makes it the
    /// gate: only who records it stores it, and only who stores it (the id is the request's
    /// primary key) sends it. So a refund left with no Reversal stored (its process stopped
    /// after the commit) can be sent by [`Refunds::send_orphans`] with no chance of two.
    async fn send_created(&self, refund: Refund) -> Result<Refund, RefundError> {
        let request_id = match &refund.request_id {
            // Recorded, and never stored: its process stopped in between.
            Some(id) => id.clone(),
            None => {
                let id = Initiator::new_request_id();
                let recorded = self
                    .storage
                    .update_refund(&refund.id, self.initiator.clock().now_ms(), &|r| {
                        (r.status == RefundStatus::Pending && r.request_id.is_none()).then(|| {
                            RefundUpdate {
                                request_id: Some(id.clone()),
                                ..Default::default()
                            }
                        })
                    })
                    .await?;
                if recorded.is_none() {
                    // Another party recorded one: it stores and sends it.
                    return self.get(&refund.id).await;
                }
                id
            }
        };
        // ReceiverParty is the shortcode that received the payment: the paybill or till a C2B
        // payment was made to, the STK shortcode otherwise.
        let receiver_party = self
            .storage
            .get_payment(&refund.payment_id)
            .await?
            .and_then(|p| p.business_short_code)
            .unwrap_or_else(|| self.receiver_party.clone());
        let ask = Ask::Reversal {
            receipt: refund.payment_receipt.clone(),
            amount: refund.amount,
            receiver_party: Some(receiver_party),
            remarks: refund.reason.clone(),
            payment_id: Some(refund.payment_id.clone()),
        };
        let Some(stored) = self
            .initiator
            .store_recorded(&request_id, PURPOSE, Some(&refund.id), &ask)
            .await?
        else {
            return self.get(&refund.id).await;
        };
        // On the refund's (and the payment's) timeline once stored: a recorded id alone was
        // never sent.
        let detail = json!({ "request_id": request_id }).to_string();
        self.storage
            .update_refund(&refund.id, self.initiator.clock().now_ms(), &|r| {
                (r.request_id.as_deref() == Some(request_id.as_str())).then(|| RefundUpdate {
                    event: Some(NewMoneyOutEvent {
                        kind: "reversal_sent".into(),
                        detail: detail.clone(),
                    }),
                    ..Default::default()
                })
            })
            .await?;
        match self.initiator.send(stored, ask).await {
            Err(InitiatorError::NotConfigured) => return Err(RefundError::NotConfigured),
            Err(e) => {
                tracing::warn!(refund_id = %refund.id, error = %e, "the reversal could not be sent")
            }
            Ok(_) => {}
        }
        self.get(&refund.id).await
    }

    /// Sends the Reversal of each pending refund unchanged for `grace_ms` (and for less than a
    /// day) with none stored: a process stopped (or could not store it) between the refund's
    /// commit and its Reversal. Nothing was sent for it: a request is stored before it is sent.
    /// How many were found.
    pub async fn send_orphans(&self, grace_ms: i64) -> Result<usize, RefundError> {
        if !self.initiator.configured() {
            return Ok(0);
        }
        let now = self.initiator.clock().now_ms();
        let orphans = self
            .storage
            .refunds_without_request(
                PURPOSE,
                (now - ORPHAN_MAX_AGE_MS, now - grace_ms),
                ORPHANS_PER_SWEEP,
            )
            .await?;
        let found = orphans.len();
        for refund in orphans {
            tracing::warn!(refund_id = %refund.id, "a pending refund has no Reversal stored; sending it now");
            let id = refund.id.clone();
            if let Err(e) = self.send_created(refund).await {
                tracing::warn!(refund_id = %id, error = %e, "the refund's Reversal could not be sent");
            }
        }
        Ok(found)
    }

    /// A person records what became of a refund held for them (Safaricom never answered and
    /// Transaction Status found nothing): reversed, with the M-Pesa receipt of the reversal they
    /// saw, or not, with a note. The refund is final as by Daraja's result (its webhook, its
    /// alerts, the customer's message). Not by the admin who asked for it (an API key's refund
    /// has no admin: any admin may).
    pub async fn settle_by_hand(
        &self,
        id: &str,
        outcome: HandOutcome,
        note: &str,
        admin: &str,
    ) -> Result<Refund, RefundError> {
        let note = check_note(note).map_err(|m| RefundError::Invalid(format!("note: {m}")))?;
        let receipt = outcome
            .receipt()
            .map(|r| parse_typed_code(r).map_err(|e| RefundError::Invalid(format!("receipt: {e}"))))
            .transpose()?;
        let by = format!("admin:{admin}");
        let refund = self.get(id).await?;
        let asker = super::asking_admin(
            self.storage.as_ref(),
            &refund.requested_by,
            refund.api_key_id.as_deref(),
        )
        .await?;
        if asker.as_deref() == Some(by.as_str()) {
            return Err(RefundError::Refused(
                "an admin cannot record the outcome of their own refund (or one asked for with an \
                 API key they made): another admin must"
                    .into(),
            ));
        }
        let pending = refund.status == RefundStatus::Pending;
        let held = self
            .initiator
            .held_open(refund.request_id.as_deref())
            .await?;
        let Some(request) = held.filter(|_| pending) else {
            return Err(RefundError::Refused(not_held_for_a_person(
                "refund",
                refund.status.as_str(),
                pending,
            )));
        };
        let payment = self.storage.get_payment(&refund.payment_id).await?;
        let now = self.initiator.clock().now_ms();
        let plan = &self.plan;
        let decide =
            |q: &InitiatorRequest, r: &Refund| final_update(plan, q, now, r, payment.as_ref());
        let settled = self
            .initiator
            .settle_by_hand(
                &request.id,
                outcome.completed(),
                receipt.as_deref(),
                &note,
                &by,
                Some(&refund.payment_id),
                SettleOwner::Refund(&decide),
            )
            .await
            .map_err(|e| match e {
                StorageError::Conflict(why) => RefundError::Refused(hand_conflict(&why)),
                other => other.into(),
            })?;
        match settled {
            Ok(_) => {
                tracing::info!(refund_id = %refund.id, admin, outcome = outcome.as_str(), "refund settled by hand");
                self.get(id).await
            }
            Err(why) => Err(RefundError::Refused(why)),
        }
    }

    /// A person acknowledges, with a note, that M-Pesa's answer contradicts the outcome
    /// recorded by hand on this refund: the hold is lifted and the note and their name go on
    /// the refund's and the payment's timelines. Nothing else changes (status, receipt, amount;
    /// no webhook, no message) and nothing is sent to Daraja. Refused unless the refund is
    /// held after a contradiction, and the second time.
    pub async fn acknowledge(
        &self,
        id: &str,
        note: &str,
        admin: &str,
    ) -> Result<Refund, RefundError> {
        let note = check_note(note).map_err(|m| RefundError::Invalid(format!("note: {m}")))?;
        let refund = self.get(id).await?;
        let event = acknowledged_event("refund_acknowledged", admin, &note);
        let decide = |_: &InitiatorRequest, _: &Refund| {
            Some(RefundUpdate {
                event: Some(event.clone()),
                ..Default::default()
            })
        };
        self.initiator
            .acknowledge(
                refund.request_id.as_deref(),
                &note,
                admin,
                SettleOwner::Refund(&decide),
            )
            .await?
            .map_err(RefundError::Refused)?;
        tracing::info!(refund_id = %refund.id, admin, "contradiction acknowledged");
        self.get(id).await
    }

    /// The refund with the state of its Reversal request (whether it is held for a person).
    pub async fn view(&self, refund: &Refund) -> Result<RefundView, RefundError> {
        let request =
            super::request_of(self.storage.as_ref(), refund.request_id.as_deref()).await?;
        Ok(RefundView::new(refund, request.as_ref()))
    }

    /// The admin the refund counts as asked for by (its requester, or the maker of the API key
    /// it was asked with): its page does not offer them Record the outcome.
    pub async fn asked_by(&self, refund: &Refund) -> Result<Option<String>, RefundError> {
        Ok(super::asking_admin(
            self.storage.as_ref(),
            &refund.requested_by,
            refund.api_key_id.as_deref(),
        )
        .await?)
    }

    /// Why the refund is held for a person, if it is, and so what its pages offer.
    pub async fn hold(&self, refund: &Refund) -> Result<Hold, RefundError> {
        Ok(Hold::of(
            super::request_of(self.storage.as_ref(), refund.request_id.as_deref())
                .await?
                .as_ref(),
        ))
    }

    pub async fn get(&self, id: &str) -> Result<Refund, RefundError> {
        self.storage
            .get_refund(id)
            .await?
            .ok_or(RefundError::NotFound)
    }

    /// Every refund of a payment, oldest first.
    pub async fn of_payment(&self, payment_id: &str) -> Result<Vec<Refund>, StorageError> {
        self.storage.refunds_for_payment(payment_id).await
    }

    /// The refund status a payment shows: its latest refund's.
    pub async fn status_of_payment(&self, payment_id: &str) -> Result<Option<Refund>, RefundError> {
        Ok(self
            .storage
            .refunds_for_payment(payment_id)
            .await?
            .into_iter()
            .last())
    }
}

impl From<InitiatorError> for RefundError {
    fn from(e: InitiatorError) -> Self {
        match e {
            InitiatorError::Storage(s) => RefundError::Storage(s),
            InitiatorError::NotConfigured => RefundError::NotConfigured,
            other => RefundError::Initiator(other),
        }
    }
}

/// The admin's alert when a refund is final (Telegram and email).
pub fn refund_alert(r: &Refund, request: &InitiatorRequest, completed: bool) -> String {
    if completed {
        format!(
            "Refund completed: {} back to the customer for payment {} (receipt {}).\nRefund {}, reason: {}",
            ksh(r.amount),
            r.payment_id,
            r.payment_receipt,
            r.id,
            r.reason
        )
    } else {
        format!(
            "Refund failed: payment {} ({}), {} ({}).\nRefund {}",
            r.payment_id,
            ksh(r.amount),
            request.result_desc.as_deref().unwrap_or("?"),
            request.result_code.as_deref().unwrap_or("?"),
            r.id
        )
    }
}

/// Told when a refund's Reversal is final: the refund follows, with its webhooks.
struct RefundOwner {
    storage: Arc<dyn Storage>,
    plan: NotificationPlan,
    clock: Clock,
    /// Where the dashboard is, for the alerts' links.
    public_url: Url,
}

/// What a refund becomes when its Reversal is final (by Daraja or by a person): its final
/// state, its timeline entry (also on the payment's) and its webhook, alerts and the customer's
/// message. One path for both. `None` once final.
fn final_update(
    plan: &NotificationPlan,
    request: &InitiatorRequest,
    now: i64,
    r: &Refund,
    payment: Option<&Payment>,
) -> Option<RefundUpdate> {
    if r.status != RefundStatus::Pending {
        return None; // final once
    }
    if r.request_id.as_deref().is_some_and(|id| id != request.id) {
        return None; // not the Reversal recorded on the refund
    }
    let completed = request.status == mpesa_domain::RequestStatus::Completed;
    let status = if completed {
        RefundStatus::Completed
    } else {
        RefundStatus::Failed
    };
    let mut after = r.clone();
    after.status = status;
    after.request_id = Some(request.id.clone());
    after.result_code = request.result_code.clone();
    after.result_desc = request.result_desc.clone();
    after.reversal_receipt = request.receipt.clone();
    after.finalized_at = Some(now);
    after.updated_at = now;
    let view = RefundView::new(&after, Some(request));
    let event_type = if completed {
        "refund.completed"
    } else {
        "refund.failed"
    };
    let admin_text = refund_alert(r, request, completed);
    let data = serde_json::to_value(&view).unwrap_or_default();
    let mut outbox = final_rows(
        plan,
        event_type,
        &r.id,
        Some(&r.payment_id),
        &data,
        &admin_text,
        now,
    );
    if completed && let Some(p) = payment {
        outbox.extend(refund_customer_rows(plan, &r.id, p, now));
    }
    let mut detail = json!({
        "refund_id": r.id,
        "request_id": request.id,
        "result_code": request.result_code,
        "result_desc": request.result_desc,
        "reversal_receipt": request.receipt,
    });
    // Settled by a person: the entry names them and keeps their note.
    let details: Option<Value> = request
        .result
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok());
    if let Some(hand) = details.as_ref().and_then(|d| d.get(SETTLED_BY_HAND)) {
        detail["by"] = hand["by"].clone();
        detail["note"] = hand["note"].clone();
    }
    Some(RefundUpdate {
        status: Some(status),
        request_id: Some(request.id.clone()),
        result_code: request.result_code.clone(),
        result_desc: request.result_desc.clone(),
        reversal_receipt: request.receipt.clone(),
        event: Some(NewMoneyOutEvent {
            kind: if completed {
                "refund_completed".into()
            } else {
                "refund_failed".into()
            },
            detail: detail.to_string(),
        }),
        outbox,
    })
}

#[async_trait]
impl InitiatorOwner for RefundOwner {
    async fn on_final(&self, request: &InitiatorRequest) -> Result<(), StorageError> {
        let Some(refund_id) = request.owner_id.as_deref() else {
            return Ok(());
        };
        let payment = match self.storage.get_refund(refund_id).await? {
            Some(r) => self.storage.get_payment(&r.payment_id).await?,
            None => return Ok(()),
        };
        let now = self.clock.now_ms();
        self.storage
            .update_refund(refund_id, now, &|r| {
                final_update(&self.plan, request, now, r, payment.as_ref())
            })
            .await?;
        Ok(())
    }

    fn contradiction_alert(
        &self,
        request: &InitiatorRequest,
        text: &str,
        now: i64,
    ) -> Vec<NewOutboxEvent> {
        let Some(refund_id) = request.owner_id.as_deref() else {
            return Vec::new();
        };
        let payment_id = payment_of(request);
        self.admin_alert(CONTRADICTED, refund_id, payment_id.as_deref(), text, now)
    }

    fn receipt_in_use_alert(
        &self,
        request: &InitiatorRequest,
        text: &str,
        now: i64,
    ) -> Vec<NewOutboxEvent> {
        let Some(refund_id) = request.owner_id.as_deref() else {
            return Vec::new();
        };
        let payment_id = payment_of(request);
        self.admin_alert(RECEIPT_IN_USE, refund_id, payment_id.as_deref(), text, now)
    }
}

/// The payment a refund's Reversal `request` reverses, so an alert lets the admin act. The
/// alerts run on the locked request and cannot read the refund: the id is kept with the
/// Reversal when it is stored, or (a request stored before that) with its settlement by hand.
fn payment_of(request: &InitiatorRequest) -> Option<String> {
    if let Ok(Ask::Reversal {
        payment_id: Some(payment_id),
        ..
    }) = serde_json::from_str::<Ask>(&request.params)
    {
        return Some(payment_id);
    }
    request
        .result
        .as_deref()
        .and_then(|x| serde_json::from_str::<Value>(x).ok())
        .and_then(|d| d[SETTLED_BY_HAND]["payment_id"].as_str().map(str::to_owned))
}

impl RefundOwner {
    /// The admins' alert (`event_type`) about refund `refund_id`: its id, its payment's with
    /// the address of the payment's dashboard page when known, and `text`.
    fn admin_alert(
        &self,
        event_type: &str,
        refund_id: &str,
        payment_id: Option<&str>,
        text: &str,
        now: i64,
    ) -> Vec<NewOutboxEvent> {
        let text = match payment_id {
            Some(payment_id) => format!(
                "Refund {refund_id} of payment {payment_id}: {text}\nThe payment: {}",
                dashboard_link(&self.public_url, &payment_href(payment_id))
            ),
            None => format!("Refund {refund_id}: {text}"),
        };
        admin_rows(&self.plan, event_type, refund_id, payment_id, &text, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mpesa_domain::{RequestKind, RequestStatus};

    fn request(code: Option<&str>, desc: Option<&str>) -> InitiatorRequest {
        InitiatorRequest {
            id: "ireq_1".into(),
            kind: RequestKind::Reversal,
            purpose: PURPOSE.into(),
            owner_id: Some("rfd_1".into()),
            originator_conversation_id: None,
            conversation_id: None,
            status: RequestStatus::Failed,
            params: "{}".into(),
            result_code: code.map(str::to_owned),
            result_desc: desc.map(str::to_owned),
            receipt: None,
            result: None,
            needs_review: false,
            attempts: 0,
            next_check_at: None,
            owner_notified_at: None,
            created_at: 0,
            updated_at: 0,
            finalized_at: None,
            version: 1,
        }
    }

    #[test]
    fn the_admins_alert_says_what_went_back_or_why_not() {
        let refund = Refund {
            id: "rfd_1".into(),
            payment_id: "pay_1".into(),
            status: RefundStatus::Pending,
            reason: "Returned goods".into(),
            amount: 1500,
            payment_receipt: "SGA1XYZ123".into(),
            request_id: None,
            result_code: None,
            result_desc: None,
            reversal_receipt: None,
            requested_by: "admin:amina".into(),
            source: "dashboard".into(),
            api_key_id: None,
            created_at: 0,
            updated_at: 0,
            finalized_at: None,
            version: 1,
        };
        assert_eq!(
            refund_alert(&refund, &request(Some("0"), Some("OK")), true),
            "Refund completed: KSh 1,500 back to the customer for payment pay_1 (receipt SGA1XYZ123).\nRefund rfd_1, reason: Returned goods"
        );
        assert_eq!(
            refund_alert(
                &refund,
                &request(
                    Some("R000001"),
                    Some("The transaction has already been reversed")
                ),
                false
            ),
            "Refund failed: payment pay_1 (KSh 1,500), The transaction has already been reversed (R000001).\nRefund rfd_1"
        );
        assert_eq!(
            refund_alert(&refund, &request(None, None), false),
            "Refund failed: payment pay_1 (KSh 1,500), ? (?).\nRefund rfd_1"
        );
    }
}

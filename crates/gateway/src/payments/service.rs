//! Creating payments and sending their push.

use std::sync::Arc;

use daraja::{DarajaClient, DarajaError, StkPushParams, StkQueryAnswer};
use mpesa_domain::decision::{self, PaymentChange};
use mpesa_domain::state_machine::{self, Deadlines, LastQuery, Outcome, TransitionKind};
use mpesa_domain::{AccountReference, AmountBounds, PaymentStatus, QueryVerdict, TransactionDesc};
use mpesa_storage::{CheckSchedule, Payment, PaymentUpdate, Storage, StorageError};
use serde_json::json;
use tokio::sync::Notify;
use url::Url;

use crate::clock::Clock;
use crate::health::DependencyHealth;
use crate::metrics::Metrics;
use crate::payments::idempotency::Idempotency;
use crate::payments::{NotificationPlan, PaymentReads, after_transition};

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("no such payment")]
    NotFound,
    /// No CheckoutRequestID: Daraja refused the push, or its answer never came.
    #[error("the payment ({status}) has no CheckoutRequestID to ask Daraja about")]
    NotQueryable { status: mpesa_domain::PaymentStatus },
    #[error(transparent)]
    Daraja(#[from] DarajaError),
}

/// What became of the push.
#[derive(Debug)]
pub enum PushOutcome {
    /// The prompt is on the phone (`pending`).
    Accepted(Payment),
    /// Daraja refused the request: the payment is `rejected`.
    Refused {
        payment: Payment,
        error: DarajaError,
    },
    /// The request may or may not have reached Daraja: the payment stays `initiated`, is never
    /// pushed again, and the reconciler resolves it.
    Unknown {
        payment: Payment,
        error: DarajaError,
    },
}

pub struct Settings {
    /// The full STK callback URL, secret included.
    pub callback_url: Url,
    pub amount_bounds: AmountBounds,
    pub reconcile_after_ms: i64,
    pub expires_after_ms: i64,
    /// `RECONCILE_KEEP_ASKING_SECS`: how long Daraja is asked about a payment whose queries get
    /// no answer, from its creation; then it is held for a person.
    pub keep_asking_ms: i64,
    /// The C2B shortcode, validation rules and Pull Transactions interval.
    pub c2b: crate::config::C2bSettings,
}

impl Settings {
    pub fn deadlines(&self) -> Deadlines {
        Deadlines {
            expires_after_ms: self.expires_after_ms,
            keep_asking_ms: self.keep_asking_ms,
        }
    }
}

/// How a query's write moves the reconciler's next check of a payment that stays open.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ScheduleRule {
    /// Leave it (a query a person or the merchant asked for).
    Keep,
    /// The reconciler's own question: the domain's [`state_machine::next_check`].
    Reconciler,
}

/// The payment service: cheap to clone, shared by the HTTP API, the Telegram bot and the
/// reconciler.
#[derive(Clone)]
pub struct Payments {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) daraja: DarajaClient,
    pub(crate) settings: Arc<Settings>,
    pub(crate) plan: Arc<NotificationPlan>,
    pub(crate) metrics: Arc<Metrics>,
    /// Wakes the outbox worker when a write queued something to send.
    pub(crate) outbox_wake: Arc<Notify>,
    pub(crate) idempotency: Idempotency,
    /// What the push last saw of Daraja, for `/health`.
    pub(crate) health: Arc<DependencyHealth>,
    /// "Now" for every rule that hangs on time (the reconciler's too).
    pub(crate) clock: Clock,
    reads: PaymentReads,
}

impl Payments {
    pub fn new(
        storage: Arc<dyn Storage>,
        daraja: DarajaClient,
        settings: Settings,
        plan: NotificationPlan,
        metrics: Arc<Metrics>,
        outbox_wake: Arc<Notify>,
        health: Arc<DependencyHealth>,
    ) -> Self {
        Payments {
            reads: PaymentReads::new(storage.clone()),
            clock: Clock::system(),
            idempotency: Idempotency::new(storage.clone()),
            health,
            storage,
            daraja,
            settings: Arc::new(settings),
            plan: Arc::new(plan),
            metrics,
            outbox_wake,
        }
    }

    /// The service reading the time from `clock` (tests move a `ManualClock`).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// One payment: `Err(NotFound)` when there is none.
    pub async fn get(&self, id: &str) -> Result<Payment, PaymentError> {
        self.storage
            .get_payment(id)
            .await?
            .ok_or(PaymentError::NotFound)
    }

    /// Payments, newest first.
    /// The read operations (lists, one payment's record, figures, received callbacks).
    pub fn reads(&self) -> &PaymentReads {
        &self.reads
    }

    pub fn amount_bounds(&self) -> AmountBounds {
        self.settings.amount_bounds
    }

    /// Sends the STK push for a payment just created, once, and records what came of it.
    pub async fn send_push(&self, payment: Payment) -> Result<PushOutcome, PaymentError> {
        self.on_own_task(move |this| async move { this.push_once(payment).await })
            .await
    }

    /// Runs `work` on a task of its own and waits for it, as money out's sends do: a caller
    /// that goes away (a client that closed its connection, the request's timeout) cannot cut
    /// it between sending a push and recording Daraja's answer. Cut there, the prompt is on the
    /// phone with nothing recorded of it: the payment waits for the reconciler's crash path, and
    /// a retry with the same key is told to wait.
    pub(crate) async fn on_own_task<T, F, Fut>(&self, work: F) -> Result<T, PaymentError>
    where
        T: Send + 'static,
        F: FnOnce(Payments) -> Fut,
        Fut: std::future::Future<Output = Result<T, PaymentError>> + Send + 'static,
    {
        tokio::spawn(work(self.clone())).await.map_err(|failed| {
            PaymentError::Storage(StorageError::Database(format!(
                "the push's task failed: {failed}"
            )))
        })?
    }

    pub(crate) async fn push_once(&self, payment: Payment) -> Result<PushOutcome, PaymentError> {
        let reference = AccountReference::parse(&payment.reference).map_err(|_| {
            StorageError::Corrupt(format!(
                "payment {} has an invalid stored reference",
                payment.id
            ))
        })?;
        let params = StkPushParams {
            phone: payment.phone.clone().ok_or_else(|| {
                StorageError::Corrupt(format!("payment {} has no phone to push to", payment.id))
            })?,
            amount: payment.amount,
            account_reference: reference,
            transaction_desc: TransactionDesc::derive_from(&payment.description),
            callback_url: self.settings.callback_url.clone(),
        };
        let started = std::time::Instant::now();
        let result = self.daraja.stk_push(&params).await;
        let elapsed_ms = started.elapsed().as_millis() as i64;
        match &result {
            Err(error) if error.is_not_sent() || error.error_code().is_none() => {
                self.health.failing("daraja", error.to_string())
            }
            _ => self.health.ok("daraja"),
        }
        match result {
            Ok(accepted) => {
                let ids = (
                    accepted.checkout_request_id.clone(),
                    accepted.merchant_request_id.clone(),
                );
                let detail = json!({
                    "checkout_request_id": accepted.checkout_request_id,
                    "merchant_request_id": accepted.merchant_request_id,
                    "response_description": accepted.response_description,
                    "customer_message": accepted.customer_message,
                    "duration_ms": elapsed_ms,
                });
                let updated = self
                    .apply(&payment.id, detail, move |p| {
                        state_machine::on_push_accepted(&p.snapshot(), &ids.0, &ids.1)
                    })
                    .await?;
                tracing::info!(payment_id = %payment.id, checkout_request_id = %mpesa_domain::mask_checkout_request_id(&accepted.checkout_request_id), "push accepted");
                Ok(PushOutcome::Accepted(updated.unwrap_or(payment)))
            }
            Err(error) if error.may_have_been_processed() || refusal_may_have_pushed(&error) => {
                let reason = error.to_string();
                let detail = json!({ "error": reason, "duration_ms": elapsed_ms });
                let updated = self
                    .apply(&payment.id, detail, move |p| {
                        state_machine::on_push_outcome_unknown(&p.snapshot(), &reason)
                    })
                    .await?;
                tracing::warn!(payment_id = %payment.id, %error, "push outcome unknown; not sending it again, the reconciler will resolve it");
                Ok(PushOutcome::Unknown {
                    payment: updated.unwrap_or(payment),
                    error,
                })
            }
            Err(error) => {
                // Nothing reached the phone: Daraja refused it, or it was never sent.
                let (code, message) = refusal(&error);
                let detail = json!({
                    "error_code": code,
                    "error_message": message,
                    "http_status": error.http_status(),
                    "duration_ms": elapsed_ms,
                });
                let updated = self
                    .apply(&payment.id, detail, move |p| {
                        state_machine::on_push_refused(&p.snapshot(), &code, &message)
                    })
                    .await?;
                tracing::warn!(payment_id = %payment.id, %error, "push refused");
                Ok(PushOutcome::Refused {
                    payment: updated.unwrap_or(payment),
                    error,
                })
            }
        }
    }

    /// Asks Daraja about a payment now (STK Query) and applies the answer.
    pub async fn refresh(&self, id: &str) -> Result<Payment, PaymentError> {
        let payment = self
            .storage
            .get_payment(id)
            .await?
            .ok_or(PaymentError::NotFound)?;
        let Some(checkout) = payment.checkout_request_id.clone() else {
            return Err(PaymentError::NotQueryable {
                status: payment.status,
            });
        };
        self.query_and_apply(&payment, &checkout, ScheduleRule::Keep)
            .await
            .map(|(after, _)| after)
    }

    /// The reconciler's next check of a payment after a check at `now`, as a schedule.
    pub(crate) fn next_check(&self, p: &Payment, now: i64, last: LastQuery) -> CheckSchedule {
        crate::payments::schedule::schedule(
            state_machine::next_check(&p.snapshot(), now, &self.settings.deadlines(), last),
            now,
            p.query_attempts,
            self.settings.reconcile_after_ms,
        )
    }

    /// One STK Query for a payment, its answer applied (or, on error, recorded on the timeline)
    /// and, for an open payment, its next check scheduled by `rule`. Returns the payment after
    /// and Daraja's verdict.
    pub(crate) async fn query_and_apply(
        &self,
        payment: &Payment,
        checkout: &str,
        rule: ScheduleRule,
    ) -> Result<(Payment, QueryVerdict), PaymentError> {
        let this = self.clone();
        let schedule_if_open = move |after: &Payment, now: i64, last: LastQuery| match rule {
            ScheduleRule::Keep => CheckSchedule::Keep,
            ScheduleRule::Reconciler => this.next_check(after, now, last),
        };
        match self.daraja.stk_query(checkout).await {
            Ok(answer) => {
                let report = answer.to_report();
                let verdict = report.result_code.query_verdict();
                let label = match &answer {
                    StkQueryAnswer::Result(_) => report.result_code.as_str().to_owned(),
                    StkQueryAnswer::StillProcessing { .. } => "still_processing".to_owned(),
                };
                self.metrics.inc(
                    "mpesa_gateway_reconciler_queries_total",
                    &[("outcome", &label)],
                );
                let detail = json!({ "result_code": report.result_code.as_str(), "result_desc": report.result_desc });
                let plan = self.plan.clone();
                let now = self.clock.now_ms();
                let written = self
                    .storage
                    .update_payment(&payment.id, now, &|p: &Payment| {
                        let outcome = state_machine::on_query(&p.snapshot(), &report);
                        let mut update = build_update(&plan, p, outcome, now);
                        update.count_query = true;
                        // Still open (the domain clears the schedule of a final payment).
                        if update.schedule == CheckSchedule::Keep {
                            let after = match &update.transition {
                                Some(t) => crate::payments::after_transition(p, t, now),
                                None => p.clone(),
                            };
                            update.schedule =
                                schedule_if_open(&after, now, LastQuery::Answered(verdict));
                        }
                        // Named `query` (on_query's transitions are) whether the answer changed
                        // the payment or not.
                        update.event = Some(detail.to_string());
                        update.observed = Some(TransitionKind::Query);
                        Some(update)
                    })
                    .await?;
                let (after, update) = written.ok_or(PaymentError::NotFound)?;
                self.after_write(&after, &update);
                Ok((after, verdict))
            }
            Err(error) => {
                self.metrics.inc(
                    "mpesa_gateway_reconciler_queries_total",
                    &[("outcome", &error.outcome_label())],
                );
                let detail =
                    json!({ "error": error.to_string(), "error_code": error.error_code() });
                let now = self.clock.now_ms();
                self.storage
                    .update_payment(&payment.id, now, &|p: &Payment| {
                        let mut update = PaymentUpdate::new(None);
                        update.count_query = true;
                        if !p.status.is_final() {
                            update.schedule = schedule_if_open(p, now, LastQuery::Unanswered);
                        }
                        // No answer, no change: the entry is named `query` all the same.
                        update.event = Some(detail.to_string());
                        update.observed = Some(TransitionKind::Query);
                        Some(update)
                    })
                    .await?;
                Err(PaymentError::Daraja(error))
            }
        }
    }

    /// Applies one state-machine event to a payment, with its timeline entry (named by the
    /// transition's kind) and outbox rows.
    pub(crate) async fn apply(
        &self,
        id: &str,
        detail: serde_json::Value,
        decide: impl Fn(&Payment) -> Outcome + Send + Sync,
    ) -> Result<Option<Payment>, PaymentError> {
        self.apply_with(id, detail, move |p| (decide(p), CheckSchedule::Keep))
            .await
    }

    /// As [`Payments::apply`], and sets the reconciler's next check in the same write, whether
    /// the event changed the payment or not. `Ok(Some)` with the payment when it changed.
    pub(crate) async fn apply_with(
        &self,
        id: &str,
        detail: serde_json::Value,
        decide: impl Fn(&Payment) -> (Outcome, CheckSchedule) + Send + Sync,
    ) -> Result<Option<Payment>, PaymentError> {
        let plan = self.plan.clone();
        let now = self.clock.now_ms();
        let detail = detail.to_string();
        let written = self
            .storage
            .update_payment(id, now, &move |p: &Payment| {
                let (outcome, schedule) = decide(p);
                let changed = matches!(outcome, Outcome::Changed(_));
                if !changed && schedule == CheckSchedule::Keep {
                    return None;
                }
                let mut update = build_update(&plan, p, outcome, now);
                if update.schedule == CheckSchedule::Keep {
                    update.schedule = schedule;
                }
                // The timeline entry is named by the transition itself (`TransitionKind`).
                if changed {
                    update.event = Some(detail.clone());
                }
                Some(update)
            })
            .await?;
        Ok(match written {
            Some((after, update)) => {
                self.after_write(&after, &update);
                update.transition.is_some().then_some(after)
            }
            None => None,
        })
    }

    /// Metrics, logs and waking the outbox after a committed change.
    pub(crate) fn after_write(&self, after: &Payment, update: &PaymentUpdate) {
        observe_committed(&self.metrics, &self.outbox_wake, after, update);
    }
}

/// Daraja's error code and message for a refused request (or, when it sent none, what kind
/// of failure it was and its text).
pub(crate) fn refusal(error: &DarajaError) -> (String, String) {
    let code = error
        .error_code()
        .map(str::to_owned)
        .unwrap_or_else(|| error.outcome_label());
    let message = error
        .error_message()
        .map(str::to_owned)
        .unwrap_or_else(|| error.to_string());
    (code, message)
}

/// The storage update for a state-machine outcome: what the domain decides of it
/// ([`decision::change`]), with the notifications it plans.
pub(crate) fn build_update(
    plan: &NotificationPlan,
    p: &Payment,
    outcome: Outcome,
    now: i64,
) -> PaymentUpdate {
    match decision::change(&p.snapshot(), outcome) {
        Some(change) => update_for(plan, p, change, now),
        None => PaymentUpdate::new(None),
    }
}

/// The storage update for a change the domain decided on `p`: storage's translation of it
/// ([`PaymentUpdate::from_change`]) and the outbox rows the notification plan makes of it (for
/// a completion through a link, also those written if the link was paid already).
pub(crate) fn update_for(
    plan: &NotificationPlan,
    p: &Payment,
    change: PaymentChange,
    now: i64,
) -> PaymentUpdate {
    let after = after_transition(p, &change.transition, now);
    let outbox = plan.for_transition(&after, &change.transition, now);
    let through_link = change.completes_through_link;
    let mut update = PaymentUpdate::from_change(change);
    update.outbox = outbox;
    if through_link {
        update.if_link_already_paid = plan.for_link_already_paid(&after, now);
    }
    update
}

/// What every committed payment change does next, wherever it came from.
pub(crate) fn observe_committed(
    metrics: &Metrics,
    outbox_wake: &Notify,
    after: &Payment,
    update: &PaymentUpdate,
) {
    if let Some(t) = &update.transition {
        if let Some(outcome) = t.notify {
            let status = outcome.status().as_str();
            metrics.inc("mpesa_gateway_payments_final_total", &[("status", status)]);
            let seconds = (after.updated_at - after.created_at).max(0) as f64 / 1000.0;
            metrics.observe(
                "mpesa_gateway_payment_time_to_final_seconds",
                &[("status", status)],
                seconds,
            );
            tracing::info!(payment_id = %after.id, status, receipt = ?after.mpesa_receipt_number, "payment final");
            if after.channel == mpesa_storage::PaymentChannel::C2b {
                metrics.inc(
                    "mpesa_gateway_c2b_payments_total",
                    &[(
                        "by",
                        after.recovered_by.as_deref().unwrap_or("confirmation"),
                    )],
                );
            }
        }
        if let Some(reason) = t.holds_for_review() {
            metrics.inc("mpesa_gateway_payments_held_for_review_total", &[]);
            tracing::warn!(payment_id = %after.id, reason = %reason.describe(), "payment held for review");
        } else if t.notify.is_some()
            && after.needs_review
            && t.review == mpesa_domain::ReviewChange::Keep
        {
            // Held by storage as it completed: its single-use link was paid by another payment.
            metrics.inc("mpesa_gateway_payments_held_for_review_total", &[]);
            tracing::warn!(payment_id = %after.id, reason = after.review_reason.as_deref().unwrap_or_default(), "payment held for review");
        }
    }
    if !update.outbox.is_empty() {
        outbox_wake.notify_one();
    }
}

/// What a person decided about a payment held for review.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminDecision {
    /// It is paid: complete it (or keep it completed) and clear the hold.
    Settle,
    /// The report that held it is not to be trusted: clear the hold; an open payment fails.
    Reject,
}

impl Payments {
    /// Records an admin's decision on a held payment, with their note, on the timeline.
    /// `Ok(None)` when the payment is not held for review.
    pub async fn admin_decide(
        &self,
        id: &str,
        decision: AdminDecision,
        note: &str,
        receipt: Option<&str>,
        username: &str,
    ) -> Result<Option<Payment>, PaymentError> {
        let note = note.trim().to_owned();
        let receipt = receipt
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_owned);
        let detail = json!({ "by": username, "note": note, "receipt": receipt });
        let Some(payment) = self.storage.get_payment(id).await? else {
            return Err(PaymentError::NotFound);
        };
        // A completion held because its single-use link was paid by another payment was never
        // announced (see `NotificationPlan::for_link_already_paid`): settling it announces it.
        let unannounced = match &payment.payment_link_id {
            Some(link) if payment.status == PaymentStatus::Completed && payment.needs_review => {
                self.storage.get_payment_link(link).await?.is_some_and(|l| {
                    l.single_use
                        && l.paid_payment_id
                            .as_deref()
                            .is_some_and(|by| by != payment.id)
                })
            }
            _ => false,
        };
        self.apply(id, detail, move |p| match decision {
            AdminDecision::Settle => {
                let mut outcome =
                    state_machine::on_admin_settle(&p.snapshot(), &note, receipt.as_deref());
                if let Outcome::Changed(t) = &mut outcome
                    && unannounced
                    && p.status == PaymentStatus::Completed
                {
                    t.notify = Some(mpesa_domain::FinalOutcome::Completed);
                }
                outcome
            }
            AdminDecision::Reject => state_machine::on_admin_reject(&p.snapshot(), &note),
        })
        .await
    }
}

/// A push Daraja refused with an HTTP 5xx error body does not prove that no prompt went out
/// ("`500.003.1001` Internal Server Error", a code never seen before): its outcome is unknown,
/// found out as a lost answer's is, not booked as refused. Its merchant errors (`500.001.1001`:
/// wrong credentials, no such merchant, the subscriber locked by another prompt) and its API
/// gateway's throttling (`500.003.02`, `500.003.03`) refuse before anything is queued.
fn refusal_may_have_pushed(error: &DarajaError) -> bool {
    const NOTHING_QUEUED: &[&str] = &["500.001.1001", "500.001.001", "500.003.02", "500.003.03"];
    matches!(error, DarajaError::Refused { status, error_code, .. }
        if *status >= 500 && !NOTHING_QUEUED.contains(&error_code.trim()))
}

//! The reconciler: payments whose callback does not come are resolved by asking Daraja.
//!
//! Every payment is created with `next_check_at = created + RECONCILE_AFTER_SECS`. A callback that
//! settles it clears the schedule. Otherwise the reconciler claims it when due (several instances
//! never claim the same payment at once), asks STK Query, applies the answer and schedules the
//! next question with exponential backoff and jitter. The rules of when to ask again, when to
//! give a payment up as `timed_out` and when to hold it for a person are the domain's
//! (`state_machine::on_expiry`, `state_machine::next_check`): at `PAYMENT_EXPIRES_AFTER_SECS`
//! it asks one last time and gives the payment up only if Daraja answered; while Daraja does not
//! answer it keeps asking (less often) until `RECONCILE_KEEP_ASKING_SECS`, then holds the payment
//! for a person. A payment held for review is only asked about, never settled. It also
//! re-applies callbacks that arrived before their push's answer was recorded.

use std::time::Duration;

use mpesa_domain::state_machine::{LastQuery, Outcome, TransitionKind};
use mpesa_domain::{FinalOutcome, Msisdn, PaymentStatus, QueryVerdict, state_machine};
use mpesa_storage::{
    CallbackDecision, CallbackFilter, CallbackKind, CallbackOutcome, PageRequest, Payment,
    PaymentFilter,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::callbacks::{decide_receipt_in_use, decide_stored_stk, parse_stk};
use crate::payments::service::ScheduleRule;
use crate::payments::{PaymentError, Payments};

/// How often the reconciler looks for due work when idle.
const TICK: Duration = Duration::from_millis(500);
/// How many payments one pass claims: as many as it asks at once. A claim lapses after
/// [`CLAIM_LEASE_MS`] whether or not its query has started; a pass that claimed 50 and asked 8
/// at a time left the last ones waiting behind slow queries (30 s each when Daraja is slow)
/// until their claims lapsed and another instance asked about them too.
const BATCH: u32 = 8;
/// A claim hides a payment from other instances this long (a crashed instance's claims lapse).
const CLAIM_LEASE_MS: i64 = 60_000;

/// Every how many passes orphan callbacks are looked at (each may cost an STK Query).
const ADOPT_EVERY: u64 = 10;

pub async fn run(
    payments: Payments,
    health: std::sync::Arc<crate::health::DependencyHealth>,
    shutdown: CancellationToken,
) {
    tracing::info!("reconciler started");
    let mut passes: u64 = 0;
    loop {
        // A full pass leaves more due: the next one starts at once.
        let mut full = false;
        match pass(&payments).await {
            Ok(n) => {
                health.ok("reconciler");
                full = n == BATCH as usize;
            }
            Err(error) => {
                tracing::warn!(%error, "reconciler pass failed; retrying");
                health.failing("reconciler", error.to_string());
            }
        }
        if passes.is_multiple_of(ADOPT_EVERY)
            && let Err(error) = adopt_orphan_callbacks(&payments).await
        {
            tracing::warn!(%error, "matching orphan callbacks failed; retrying");
        }
        passes = passes.wrapping_add(1);
        let pause = if full { Duration::ZERO } else { TICK };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
        }
    }
    tracing::info!("reconciler stopped");
}

/// One pass: due payments, then callbacks waiting for their payment. Public for tests.
pub async fn pass(payments: &Payments) -> Result<usize, mpesa_storage::StorageError> {
    let now = payments.clock.now_ms();
    let due = payments
        .storage
        .claim_due_checks(now, now + CLAIM_LEASE_MS, BATCH)
        .await?;
    let n = due.len();
    // All asked at once: at most `BATCH` queries in flight.
    let mut tasks = tokio::task::JoinSet::new();
    for payment in due {
        let payments = payments.clone();
        tasks.spawn(async move { check_one(&payments, payment).await });
    }
    while tasks.join_next().await.is_some() {}
    rematch_callbacks(payments).await?;
    Ok(n)
}

async fn check_one(payments: &Payments, payment: Payment) {
    let (payment, last) = match payment.checkout_request_id.clone() {
        Some(checkout) => match payments
            .query_and_apply(&payment, &checkout, ScheduleRule::Reconciler)
            .await
        {
            Ok((after, verdict)) => (after, LastQuery::Answered(verdict)),
            Err(PaymentError::Daraja(error)) => {
                tracing::warn!(payment_id = %payment.id, %error, "STK Query got no answer from Daraja");
                (payment, LastQuery::Unanswered)
            }
            Err(error) => {
                // Nothing recorded: the claim lapses and the payment is checked again.
                tracing::warn!(payment_id = %payment.id, %error, "STK Query could not be recorded");
                return;
            }
        },
        None => (payment, LastQuery::NotAsked),
    };
    if payment.status.is_final() {
        return;
    }
    let deadlines = payments.settings.deadlines();
    let detail = json!({
        "after_seconds": deadlines.expires_after_ms / 1000,
        "last_query": match last {
            LastQuery::NotAsked => "none: no CheckoutRequestID",
            LastQuery::Answered(_) => "answered",
            LastQuery::Unanswered => "no answer from Daraja",
        },
    });
    // Expiry, or a hold for a person; and the next check, written with it.
    let result = payments
        .apply_with(&payment.id, detail, move |p| {
            // Read now, after the query: a slow Daraja (a query can take 40 s) must not put the
            // next check, or the expiry, in the past.
            let now = payments.clock.now_ms();
            let outcome = state_machine::on_expiry(&p.snapshot(), now, &deadlines, last);
            let after = match &outcome {
                Outcome::Changed(t) => crate::payments::after_transition(p, t, now),
                _ => p.clone(),
            };
            let schedule = payments.next_check(&after, now, last);
            (outcome, schedule)
        })
        .await;
    match result {
        Ok(Some(p)) if p.status.is_final() => {
            tracing::info!(payment_id = %p.id, "payment timed out: Daraja answered, with no final result")
        }
        Ok(Some(p)) if p.needs_review => {
            tracing::warn!(payment_id = %p.id, "payment held for a person: Daraja could not tell what became of it")
        }
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(payment_id = %payment.id, %error, "could not record the payment's expiry")
        }
    }
}

/// Unmatched success callbacks that may belong to a payment whose push outcome was unknown (the
/// push timed out after sending, so Daraja's CheckoutRequestID never reached us). A callback is
/// tied to such a payment only when its phone and amount fit exactly one of them AND Daraja,
/// asked about the callback's CheckoutRequestID, confirms the payment succeeded; the payment then
/// takes that CheckoutRequestID and is held for a person (it stays `pending`: a held payment is
/// settled by a person, not by the query or the callback). Public for tests.
pub async fn adopt_orphan_callbacks(
    payments: &Payments,
) -> Result<usize, mpesa_storage::StorageError> {
    let now = payments.clock.now_ms();
    let window = payments.settings.expires_after_ms;
    let filter = CallbackFilter {
        outcome: Some(CallbackOutcome::Unmatched),
        kind: Some(CallbackKind::Stk),
        ..Default::default()
    };
    let orphans = payments
        .storage
        .list_callbacks(
            &filter,
            &PageRequest {
                limit: 50,
                cursor: None,
            },
        )
        .await?;
    let mut adopted = 0;
    for cb in orphans.items {
        if cb.received_at < now - 2 * window {
            break; // newest first: the rest are older still
        }
        let parsed = parse_stk(&cb.body);
        let (Ok(report), Some(checkout), Some(merchant)) = (
            &parsed.report,
            &parsed.checkout_request_id,
            &parsed.merchant_request_id,
        ) else {
            continue;
        };
        let Some(details) = &report.success else {
            continue;
        };
        let (Some(cents), Some(phone)) = (
            details.amount,
            details.phone.as_deref().and_then(|p| Msisdn::parse(p).ok()),
        ) else {
            continue; // a masked or hashed number cannot pick a payment
        };
        let candidates: Vec<Payment> = payments
            .storage
            .list_payments(
                &PaymentFilter {
                    status: Some(PaymentStatus::Initiated),
                    phone: Some(phone.to_string()),
                    created_from: Some(cb.received_at - window),
                    created_to: Some(cb.received_at + 1),
                    ..Default::default()
                },
                &PageRequest {
                    limit: 10,
                    cursor: None,
                },
            )
            .await?
            .items
            .into_iter()
            .filter(|p| p.checkout_request_id.is_none() && p.amount.cents() == cents)
            .collect();
        let [payment] = candidates.as_slice() else {
            continue;
        };
        // A push still on its way to Daraja is not "outcome unknown": its answer will bring the
        // ids, and the rematch pass will apply this callback without asking Daraja anything.
        if !push_outcome_is_unknown(payments, payment, now).await? {
            continue;
        }
        // Confirm with Daraja before believing the callback's ids.
        let confirmed = match payments.daraja.stk_query(checkout).await {
            Ok(answer) => {
                answer.to_report().result_code.query_verdict()
                    == QueryVerdict::Final(FinalOutcome::Completed)
            }
            Err(error) => {
                tracing::debug!(callback_id = %cb.id, %error, "could not confirm an orphan callback");
                false
            }
        };
        if !confirmed {
            continue;
        }
        let (checkout, merchant) = (checkout.clone(), merchant.clone());
        let detail = json!({ "callback_id": cb.id, "checkout_request_id": checkout });
        let ids = (checkout.clone(), merchant);
        let Some(pending) = payments
            .apply(&payment.id, detail, move |p| {
                state_machine::on_callback_adopted(&p.snapshot(), &ids.0, &ids.1)
            })
            .await
            .map_err(storage_error)?
        else {
            continue;
        };
        tracing::warn!(payment_id = %pending.id, callback_id = %cb.id, "orphan callback tied to a payment whose push outcome was unknown; held for review");
        // Daraja's answer goes on its timeline for the person deciding (it changes nothing of a
        // held payment), and the rematch pass ties the callback to it.
        if let Err(error) = payments
            .query_and_apply(&pending, &checkout, ScheduleRule::Keep)
            .await
        {
            tracing::warn!(payment_id = %pending.id, %error, "query after adopting a callback failed; the reconciler will ask again");
        }
        adopted += 1;
    }
    if adopted > 0 {
        rematch_callbacks(payments).await?;
    }
    Ok(adopted)
}

/// Whether the payment's push can no longer bring its own answer: it was recorded as
/// "outcome unknown", or it is older than the longest a push can take (a token request and the
/// push, each up to the request timeout), as after a crash while the push was at Daraja.
async fn push_outcome_is_unknown(
    payments: &Payments,
    payment: &Payment,
    now: i64,
) -> Result<bool, mpesa_storage::StorageError> {
    let config = payments.daraja.config();
    let longest_push = 2 * (config.connect_timeout + config.request_timeout);
    if now - payment.created_at > longest_push.as_millis() as i64 {
        return Ok(true);
    }
    let events = payments.storage.payment_events(&payment.id).await?;
    let unknown = TransitionKind::PushOutcomeUnknown.as_str();
    Ok(events.iter().any(|e| e.kind == unknown))
}

fn storage_error(e: crate::payments::PaymentError) -> mpesa_storage::StorageError {
    match e {
        crate::payments::PaymentError::Storage(s) => s,
        other => mpesa_storage::StorageError::Database(other.to_string()),
    }
}

/// Callbacks stored as unmatched whose CheckoutRequestID now belongs to a payment.
async fn rematch_callbacks(payments: &Payments) -> Result<(), mpesa_storage::StorageError> {
    for cb in payments.storage.rematchable_callbacks(100).await? {
        let plan = payments.plan.clone();
        let now = payments.clock.now_ms();
        let result = payments
            .storage
            .reapply_callback(&cb.id, now, &move |incoming, payment| {
                decide_stored_stk(&plan, incoming, payment, now)
            })
            .await;
        match result {
            Ok(ingested) => {
                if let (Some(after), Some(update)) = (&ingested.payment, &ingested.update) {
                    payments.after_write(after, update);
                }
                if ingested.outcome != CallbackOutcome::Unmatched {
                    tracing::info!(callback_id = %cb.id, outcome = ingested.outcome.as_str(), "late-matched callback applied");
                }
            }
            // Its receipt belongs to another payment: this one is held for a person, as when
            // such a callback is received. Else it fails here on every pass, for ever.
            Err(mpesa_storage::StorageError::Conflict(rule))
                if rule.contains("mpesa_receipt_number") =>
            {
                let plan = payments.plan.clone();
                let held = payments
                    .storage
                    .reapply_callback(&cb.id, now, &move |_incoming, payment| match payment {
                        Some(p) => decide_receipt_in_use(&plan, p, now),
                        None => CallbackDecision::only(CallbackOutcome::Unmatched),
                    })
                    .await;
                match held {
                    Ok(ingested) => {
                        if let (Some(after), Some(update)) = (&ingested.payment, &ingested.update) {
                            payments.after_write(after, update);
                        }
                        tracing::warn!(callback_id = %cb.id, "late-matched callback carries another payment's receipt; its payment is held for review");
                    }
                    Err(error) => {
                        tracing::warn!(callback_id = %cb.id, %error, "could not re-apply callback")
                    }
                }
            }
            Err(error) => {
                tracing::warn!(callback_id = %cb.id, %error, "could not re-apply callback")
            }
        }
    }
    Ok(())
}

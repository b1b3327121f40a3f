//! Callbacks stored raw and acknowledged before they were applied (`received`): applying their
//! batch conflicted with another transaction, typically another Galera node settling the same
//! payment at the same moment, and the gateway does not make Safaricom wait (or retry) for that.
//!
//! The instance that stored them applies them a moment later, one transaction each; a sweep
//! applies whatever is still `received` a few seconds after it came (an instance that crashed in
//! between, or an apply that conflicted again), on every instance. Applying is idempotent: the
//! callback row is locked and only a callback that has not acted yet is decided, so two
//! instances applying the same one apply it once.

use std::time::Duration;

use mpesa_storage::{CallbackDecision, CallbackKind, CallbackOutcome};
use rand::Rng as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::callbacks::{Prepared, decide, parse_stk, prepare_confirmation};
use crate::payments::Payments;
use crate::payments::c2b::CONFIRMATION_PREPARE_WITHIN;
use crate::payments::service::observe_committed;

/// How often every instance looks for callbacks left `received`, and how old they must be
/// (younger ones are the storing instance's to apply).
const SWEEP_EVERY: Duration = Duration::from_secs(2);
const LEFT_AFTER_MS: i64 = 5_000;
const SWEEP_BATCH: u32 = 200;

pub(crate) struct Redrive {
    pub payments: Payments,
    /// Where the next sweep goes on from: each takes the next [`SWEEP_BATCH`] and starts from
    /// the first again after the last, so that the first ones (C2B confirmations waiting for an
    /// STK payment a person has yet to settle) cannot hide the rest for ever.
    pub after: Option<String>,
}

impl Redrive {
    /// Applies the callbacks whose ids come on `stored` (this instance's), and sweeps for
    /// everyone's leftovers, until `stop`.
    pub(crate) async fn run(
        mut self,
        mut stored: mpsc::UnboundedReceiver<String>,
        stop: CancellationToken,
    ) {
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                id = stored.recv() => {
                    let Some(id) = id else { break };
                    // The transaction it collided with is committing now; let it land.
                    let pause = rand::thread_rng().gen_range(1..=20);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    self.apply(&id).await;
                }
                _ = sweep.tick() => self.sweep().await,
            }
        }
    }

    async fn sweep(&mut self) {
        let left = match self
            .payments
            .storage
            .received_callbacks_after(
                self.payments.clock.now_ms() - LEFT_AFTER_MS,
                self.after.as_deref(),
                SWEEP_BATCH,
            )
            .await
        {
            Ok(left) => left,
            Err(error) => {
                tracing::debug!(%error, "could not look for received callbacks");
                return;
            }
        };
        if !left.is_empty() {
            tracing::info!(
                count = left.len(),
                "applying callbacks stored earlier and not applied yet"
            );
        }
        self.after = match left.last() {
            Some(last) if left.len() >= SWEEP_BATCH as usize => Some(last.id.clone()),
            _ => None,
        };
        for cb in left {
            self.apply(&cb.id).await;
        }
    }

    /// Parses a stored callback's body again into what its decision needs: `Err(None)` when a
    /// C2B confirmation's body no longer parses (it is unparseable, not to be tried again).
    async fn prepare(&self, callback_id: &str) -> Result<Option<Prepared>, Option<String>> {
        let stored = self
            .payments
            .storage
            .get_callback(callback_id)
            .await
            .map_err(|e| Some(e.to_string()))?;
        Ok(match stored {
            Some(cb) if cb.kind == CallbackKind::Stk => {
                parse_stk(&cb.body).report.ok().map(Prepared::Stk)
            }
            Some(cb) if cb.kind == CallbackKind::C2bConfirmation => {
                // Its lookups wait on the database no longer than at reception: a lock that
                // holds them must not hold up every other callback left to apply.
                let prepared = tokio::time::timeout(
                    CONFIRMATION_PREPARE_WITHIN,
                    prepare_confirmation(&self.payments, &cb.body),
                )
                .await
                .map_err(|_| Some(format!("no answer within {CONFIRMATION_PREPARE_WITHIN:?}")))?
                .map_err(|e| Some(e.to_string()))?;
                Some(Prepared::C2b(Box::new(prepared.ok_or(None)?)))
            }
            _ => None,
        })
    }

    async fn apply(&self, callback_id: &str) {
        let prepared = match self.prepare(callback_id).await {
            Ok(p) => Some(p),
            Err(None) => None,
            Err(Some(error)) => {
                tracing::warn!(%callback_id, %error, "could not read a stored callback yet");
                return;
            }
        };
        let now = self.payments.clock.now_ms();
        let plan = self.payments.plan.clone();
        let result = self
            .payments
            .storage
            .reapply_callback(
                callback_id,
                now,
                &move |incoming, payment| match &prepared {
                    Some(prepared) => decide(&plan, incoming, prepared.as_ref(), payment, now),
                    // A body read at reception that no longer parses (parsing got stricter).
                    None => CallbackDecision::only(CallbackOutcome::Unparseable),
                },
            )
            .await;
        match result {
            Ok(ingested) if ingested.outcome == CallbackOutcome::Received => {}
            Ok(ingested) => {
                self.payments.metrics.inc(
                    "mpesa_gateway_callbacks_redriven_total",
                    &[("outcome", ingested.outcome.as_str())],
                );
                if let (Some(after), Some(update)) = (&ingested.payment, &ingested.update) {
                    observe_committed(
                        &self.payments.metrics,
                        &self.payments.outbox_wake,
                        after,
                        update,
                    );
                }
                tracing::debug!(%callback_id, outcome = ingested.outcome.as_str(), "stored callback applied");
            }
            // Left `received`: the sweep tries again.
            Err(error) => {
                tracing::warn!(%callback_id, %error, "could not apply a stored callback yet")
            }
        }
    }
}

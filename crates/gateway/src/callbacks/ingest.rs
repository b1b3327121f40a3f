//! Durable callback ingestion with group commit.
//!
//! A callback is acknowledged only after its raw body and its effect are committed. Committing
//! each one alone costs one fsync each; instead, concurrent callbacks queue here and a committer
//! takes everything queued into one transaction (one fsync for the batch), then answers each
//! waiting request. Under light load a batch is a single callback and nothing waits; under load
//! batches grow by themselves. SQLite has one committer (it has one writer anyway); PostgreSQL and
//! MySQL have a few, so their connection pools are used.
//!
//! A batch that conflicts with another transaction is stored raw by storage (`received`) and
//! acknowledged; [`redrive`](super::redrive) applies it right after. A request that gets no
//! answer within [`CALLBACK_DEADLINE`] (a database that hangs, a Galera node cut off from its
//! cluster) is answered with an error rather than left waiting.

use std::sync::Arc;

use mpesa_storage::{
    Backend, CallbackDecision, CallbackOutcome, IncomingCallback, IngestedCallback, Storage,
    StorageError,
};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::callbacks::redrive::Redrive;
use crate::callbacks::{Prepared, Reports, decide, decide_receipt_in_use};
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::payments::service::observe_committed;
use crate::payments::{NotificationPlan, Payments};

/// The largest batch one transaction takes.
const MAX_BATCH: usize = 128;
/// How long a committer under load waits for more callbacks before committing: at most about
/// what one more commit would cost (a batch's commit took 2.2 ms on average on SQLite, with its
/// fsync). On two busy cores the callbacks answered by the last commit took longer than 500 µs
/// to come back, so a shorter wait committed half batches: 2 ms took 14% more callbacks a second
/// than 500 µs on SQLite, 5% on PostgreSQL, 12% on MariaDB (bench/README, 7 December).
const LINGER: std::time::Duration = std::time::Duration::from_millis(2);
/// The longest a callback waits for its commit before it is answered 503 (its transaction may
/// still commit: answering an error for a stored callback is safe, the reverse is not).
pub const CALLBACK_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the gateway is shutting down")]
    ShuttingDown,
    #[error("not committed within {0:?}")]
    Deadline(std::time::Duration),
}

struct Job {
    callback: IncomingCallback,
    prepared: Option<Prepared>,
    reply: oneshot::Sender<Result<IngestedCallback, IngestError>>,
}

#[derive(Clone)]
pub struct CallbackIngestor {
    queue: mpsc::Sender<Job>,
    /// The payment service's: a callback is stamped `received_at` by it, so the re-drive's
    /// "left `received` for a few seconds" reads the same clock as the stamp.
    clock: Clock,
}

impl CallbackIngestor {
    /// Starts the committer. It stops when `closed` is cancelled (after the HTTP server has
    /// finished its requests), once everything queued is committed: graceful shutdown loses
    /// nothing half-written.
    pub fn start(
        payments: Payments,
        closed: tokio_util::sync::CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel::<Job>(4096);
        let committers = match payments.storage.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres | Backend::MySql => 4,
        };
        let clock = payments.clock.clone();
        let handle = tokio::spawn(run(rx, payments, committers, closed));
        (CallbackIngestor { queue: tx, clock }, handle)
    }

    /// Stores and applies one callback; returns once it is committed.
    pub async fn ingest(
        &self,
        mut callback: IncomingCallback,
        prepared: Option<Prepared>,
    ) -> Result<IngestedCallback, IngestError> {
        callback.received_at = self.clock.now_ms();
        let (reply, answer) = oneshot::channel();
        let queued_and_answered = async {
            self.queue
                .send(Job {
                    callback,
                    prepared,
                    reply,
                })
                .await
                .map_err(|_| IngestError::ShuttingDown)?;
            answer.await.map_err(|_| IngestError::ShuttingDown)?
        };
        tokio::time::timeout(CALLBACK_DEADLINE, queued_and_answered)
            .await
            .map_err(|_| IngestError::Deadline(CALLBACK_DEADLINE))?
    }
}

async fn run(
    mut rx: mpsc::Receiver<Job>,
    payments: Payments,
    committers: usize,
    closed: tokio_util::sync::CancellationToken,
) {
    let storage = payments.storage.clone();
    let plan = payments.plan.clone();
    let metrics = payments.metrics.clone();
    let outbox_wake = payments.outbox_wake.clone();
    let clock = payments.clock.clone();
    let permits = Arc::new(Semaphore::new(committers));
    let mut inflight = tokio::task::JoinSet::new();
    let (stored, stored_ids) = mpsc::unbounded_channel();
    let redrive_stop = tokio_util::sync::CancellationToken::new();
    let redrive = tokio::spawn(
        Redrive {
            payments: payments.clone(),
            after: None,
        }
        .run(stored_ids, redrive_stop.clone()),
    );
    let mut last_batch = 0usize;
    loop {
        // Wait for a committer first: while all are busy, callbacks pile up and form the next
        // batch.
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        let first = tokio::select! {
            job = rx.recv() => job,
            _ = closed.cancelled() => {
                // No new jobs; what is queued is still committed below.
                rx.close();
                rx.recv().await
            }
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // Under load, callbacks answered by the last commit come straight back; a moment's wait
        // lets them join this batch instead of each paying for a commit of its own. The wait
        // ends as soon as as many have come as last time.
        if batch.len() < last_batch {
            let deadline = tokio::time::Instant::now() + LINGER;
            while batch.len() < last_batch.min(MAX_BATCH) {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(job)) => batch.push(job),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        last_batch = batch.len();
        let storage = storage.clone();
        let plan = plan.clone();
        let metrics = metrics.clone();
        let wake = outbox_wake.clone();
        let stored = stored.clone();
        let clock = clock.clone();
        inflight.spawn(async move {
            commit(
                batch,
                storage.as_ref(),
                &plan,
                &metrics,
                &wake,
                &stored,
                &clock,
            )
            .await;
            drop(permit);
        });
        while inflight.try_join_next().is_some() {}
    }
    while inflight.join_next().await.is_some() {}
    // What is still `received` stays stored; the next start (or another instance) applies it.
    redrive_stop.cancel();
    let _ = redrive.await;
}

async fn commit(
    batch: Vec<Job>,
    storage: &dyn Storage,
    plan: &NotificationPlan,
    metrics: &Metrics,
    wake: &tokio::sync::Notify,
    stored: &mpsc::UnboundedSender<String>,
    clock: &Clock,
) {
    let mut reports = Reports::new();
    let mut callbacks = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    for job in batch {
        if let Some(p) = job.prepared {
            reports.insert(job.callback.id.clone(), p);
        }
        callbacks.push(job.callback);
        replies.push(job.reply);
    }
    let now = clock.now_ms();
    let size = callbacks.len();
    let started = std::time::Instant::now();
    let result = storage
        .ingest_callbacks(&callbacks, now, &|incoming, payment| {
            decide(plan, incoming, reports.get(&incoming.id), payment, now)
        })
        .await;
    tracing::trace!(
        size,
        elapsed_us = started.elapsed().as_micros() as u64,
        "callback batch committed"
    );
    let items = match result {
        Ok(items) => items,
        Err(e) => {
            tracing::error!(error = %e, "callback batch could not be committed; answering with an error so nothing is acknowledged");
            let text = e.to_string();
            for (reply, cb) in replies.into_iter().zip(&callbacks) {
                metrics.inc(
                    "mpesa_gateway_callbacks_received_total",
                    &[("kind", cb.kind.as_str()), ("outcome", "error")],
                );
                let _ = reply.send(Err(IngestError::Storage(match &e {
                    StorageError::Unavailable(_) => StorageError::Unavailable(text.clone()),
                    _ => StorageError::Database(text.clone()),
                })));
            }
            return;
        }
    };
    // Each callback goes back with its answer: one the batch could not apply is stored alone.
    for ((item, reply), original) in items.into_iter().zip(replies).zip(callbacks) {
        let kind = original.kind.as_str();
        let item = match item {
            Ok(ingested) => Ok(ingested),
            Err(error) => store_alone(storage, plan, original, error, clock).await,
        };
        let answer = match item {
            Ok(ingested) => {
                metrics.inc(
                    "mpesa_gateway_callbacks_received_total",
                    &[("kind", kind), ("outcome", ingested.outcome.as_str())],
                );
                if let (Some(after), Some(update)) = (&ingested.payment, &ingested.update) {
                    observe_committed(metrics, wake, after, update);
                }
                if ingested.outcome == CallbackOutcome::Received {
                    let _ = stored.send(ingested.callback_id.clone());
                }
                Ok(ingested)
            }
            Err(e) => {
                metrics.inc(
                    "mpesa_gateway_callbacks_received_total",
                    &[("kind", kind), ("outcome", "error")],
                );
                Err(IngestError::Storage(e))
            }
        };
        let _ = reply.send(answer);
    }
}

/// An item the batch could not apply (e.g. a success whose receipt number belongs to another
/// payment: the unique rule refused it) is stored on its own, with the reason, so that every
/// raw body is kept; a receipt that is in use holds the payment for review.
async fn store_alone(
    storage: &dyn Storage,
    plan: &NotificationPlan,
    mut callback: IncomingCallback,
    error: StorageError,
    clock: &Clock,
) -> Result<IngestedCallback, StorageError> {
    let receipt_in_use =
        matches!(&error, StorageError::Conflict(rule) if rule.contains("mpesa_receipt_number"));
    tracing::warn!(callback_id = %callback.id, %error, "callback could not be applied; storing it alone");
    callback.parse_error = Some(format!("not applied: {error}"));
    let now = clock.now_ms();
    let mut items = storage
        .ingest_callbacks(&[callback], now, &|_incoming, payment| match payment {
            Some(p) if receipt_in_use => decide_receipt_in_use(plan, p, now),
            _ => CallbackDecision::only(CallbackOutcome::Ignored),
        })
        .await?;
    items.pop().unwrap_or(Err(StorageError::Database(
        "no result for the callback".into(),
    )))
}

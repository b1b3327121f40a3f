//! The durable outbox: email, Telegram and webhook messages written in the same transaction as
//! the payment change they announce, delivered here at least once, outside any transaction.
//!
//! The worker claims due events with a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL and
//! MariaDB; one writer on SQLite), so several instances never deliver the same event at the same
//! time; a worker that dies mid-delivery loses its lease and another takes the event over (the
//! stable event id lets receivers drop the rare repeat). Each attempt is recorded with its
//! status, error and duration; failures are retried on the channel's schedule and, after the
//! last, dead-lettered until a person retries them (`mpesa-gateway outbox retry ID`).

pub mod email;
pub mod message;
pub mod queue;
pub mod schedule;
pub mod telegram;
pub mod webhook_sender;

pub use queue::OutboxQueue;
pub use schedule::{RetrySchedule, RetrySchedules};

use std::sync::Arc;
use std::time::{Duration, Instant};

use mpesa_storage::{Channel, DeliveryAttempt, DeliveryResult, OutboxEvent, Storage};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Config;
use crate::health::DependencyHealth;
use crate::metrics::Metrics;

const BATCH: u32 = 32;
/// Deliveries in flight at once.
const CONCURRENCY: usize = 8;
/// Deliveries made and not yet recorded, at most: those in flight, and as many again whose
/// attempts wait for the recording under way (so deliveries go on while it commits). After a
/// crash, or a database that stops answering, these are delivered again.
const UNRECORDED: usize = 2 * CONCURRENCY;
/// On shutdown, how long in-flight deliveries may finish before they are abandoned (their
/// lease then lapses and the event is delivered after the restart).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// An attempt to record (event id, attempt), with the delivery slot it frees once recorded.
type Finished = ((String, DeliveryAttempt), tokio::sync::OwnedSemaphorePermit);

/// What one attempt came to, as a channel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Delivered {
        code: Option<i32>,
    },
    /// Failed; try again on the schedule, or after `after` when the receiver said so
    /// (Telegram's `retry_after`).
    Failed {
        error: String,
        code: Option<i32>,
        after: Option<Duration>,
    },
    /// Failed in a way retrying cannot fix (e.g. a malformed payload): dead-letter now.
    Permanent {
        error: String,
        code: Option<i32>,
    },
    /// The destination refuses us for good (a chat that blocked the bot).
    Blocked {
        error: String,
        code: Option<i32>,
    },
}

/// Sends one event on its channel. Implemented by the email, Telegram and webhook senders.
pub trait Sender: Send + Sync {
    fn send(&self, event: &OutboxEvent) -> impl Future<Output = Delivery> + Send;
}

/// The configured channels.
#[derive(Clone, Default)]
pub struct Deliverers {
    pub webhook: Option<Arc<dyn DynSender>>,
    pub email: Option<Arc<dyn DynSender>>,
    pub telegram: Option<Arc<dyn DynSender>>,
}

/// Object-safe form of [`Sender`].
pub trait DynSender: Send + Sync {
    fn send_boxed<'a>(
        &'a self,
        event: &'a OutboxEvent,
    ) -> std::pin::Pin<Box<dyn Future<Output = Delivery> + Send + 'a>>;
}

impl<S: Sender> DynSender for S {
    fn send_boxed<'a>(
        &'a self,
        event: &'a OutboxEvent,
    ) -> std::pin::Pin<Box<dyn Future<Output = Delivery> + Send + 'a>> {
        Box::pin(self.send(event))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Email(#[from] email::EmailSetupError),
    #[error(transparent)]
    Webhook(#[from] webhook_sender::WebhookSetupError),
    #[error("Telegram client: {0}")]
    Telegram(#[from] crate::telegram::BotApiError),
}

impl Deliverers {
    /// The senders for the channels the configuration turns on.
    pub fn from_config(
        config: &Config,
        storage: Arc<dyn Storage>,
        clock: Clock,
    ) -> Result<Self, SetupError> {
        let mut deliverers = Deliverers::default();
        if let Some(w) = &config.webhook {
            deliverers.webhook = Some(Arc::new(webhook_sender::WebhookSender::new(
                w.url.clone(),
                w.secret.clone(),
                config.webhook_allow_private,
                config.outbox.webhook_timeout,
            )?));
        }
        if let Some(e) = &config.email {
            deliverers.email = Some(Arc::new(email::EmailSender::new(
                e,
                config.outbox.smtp_timeout,
            )?));
        }
        if let Some(t) = &config.telegram {
            let api = crate::telegram::BotApi::new(&t.api_base, t.bot_token.clone())?;
            deliverers.telegram =
                Some(Arc::new(telegram::TelegramSender::new(api, storage, clock)));
        }
        Ok(deliverers)
    }

    /// The channels this instance delivers on. It claims only their events: an instance
    /// without a channel's settings (a dashboard-only instance, one half-way through a rolling
    /// deploy) must leave that channel's events to the instances that have it, not fail them.
    pub fn channels(&self) -> Vec<Channel> {
        Channel::ALL
            .into_iter()
            .filter(|&channel| self.for_channel(channel).is_some())
            .collect()
    }

    fn for_channel(&self, channel: Channel) -> Option<&Arc<dyn DynSender>> {
        match channel {
            Channel::Webhook => self.webhook.as_ref(),
            Channel::Email => self.email.as_ref(),
            Channel::Telegram => self.telegram.as_ref(),
        }
    }
}

#[derive(Clone)]
pub struct OutboxWorker {
    pub storage: Arc<dyn Storage>,
    pub deliverers: Deliverers,
    pub schedules: RetrySchedules,
    pub owner: String,
    pub metrics: Arc<Metrics>,
    pub health: Arc<DependencyHealth>,
    pub wake: Arc<Notify>,
    /// How long a claim protects an event (`OUTBOX_LEASE`). Every attempt ends before it does.
    pub lease: Duration,
    /// How often an idle worker looks for retries that came due (`OUTBOX_POLL_INTERVAL`).
    pub poll_interval: Duration,
    /// When an event is due, and when its retry will be.
    pub clock: Clock,
}

impl OutboxWorker {
    /// Delivers until `shutdown`: then claims nothing more, gives in-flight deliveries a
    /// bounded time to finish, and abandons the rest to their lease.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(owner = %self.owner, "outbox worker started");
        loop {
            let claimed = match self.pass_until(&shutdown).await {
                Ok(n) => n,
                Err(error) => {
                    tracing::warn!(%error, "outbox pass failed; retrying");
                    self.health.failing("outbox", error.to_string());
                    0
                }
            };
            if shutdown.is_cancelled() {
                break;
            }
            if claimed == 0 {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.poll_interval) => {}
                }
            }
        }
        tracing::info!("outbox worker stopped");
    }

    /// Claims due events and delivers them; returns how many were claimed. Public for tests.
    pub async fn pass(&self) -> Result<usize, mpesa_storage::StorageError> {
        self.pass_until(&CancellationToken::new()).await
    }

    async fn pass_until(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<usize, mpesa_storage::StorageError> {
        let now = self.clock.now_ms();
        let lease_ms = self.lease.as_millis() as i64;
        // Attempts must be over before the lease is: past it, another worker may take the
        // event and deliver it a second time. A tenth of the lease is kept as a margin.
        let deadline = Instant::now() + self.lease - self.lease / 10;
        let events = self
            .storage
            .claim_outbox_on(
                now,
                &self.owner,
                now + lease_ms,
                BATCH,
                &self.deliverers.channels(),
            )
            .await?;
        self.health.ok("outbox");
        let n = events.len();
        // Attempts are recorded by one task beside the deliveries, each time in one
        // transaction with every attempt that finished meanwhile: a busy outbox pays one commit
        // (one fsync) for many attempts rather than one each, and no delivery waits for one.
        // A delivery's slot is freed only once its attempt is recorded, so no more than
        // UNRECORDED events are ever delivered and not yet recorded: when the database stops
        // answering, the deliveries stop too, and few are made again after the lease lapses.
        let slots = Arc::new(tokio::sync::Semaphore::new(UNRECORDED));
        let (finished, mut to_record) = tokio::sync::mpsc::unbounded_channel();
        let mut recorder = {
            let worker = self.clone();
            tokio::spawn(async move {
                let mut done: Vec<Finished> = Vec::new();
                while to_record.recv_many(&mut done, 4 * BATCH as usize).await > 0 {
                    let (mut attempts, slots): (Vec<_>, Vec<_>) = done.drain(..).unzip();
                    worker.record(&mut attempts).await;
                    // Recorded (or given up to the lease): their deliveries' slots are free.
                    drop(slots);
                }
            })
        };
        let mut tasks = JoinSet::new();
        for event in events {
            while tasks.len() >= CONCURRENCY {
                if !join_one(&mut tasks, shutdown).await {
                    break;
                }
            }
            let slot = tokio::select! {
                biased;
                // Not started: left to the lease, delivered after the restart.
                _ = shutdown.cancelled() => break,
                slot = slots.clone().acquire_owned() => slot.expect("the slots are never closed"),
            };
            let worker = self.clone();
            let finished = finished.clone();
            tasks.spawn(async move {
                if let Some(attempt) = worker.deliver(event, deadline).await {
                    // The recorder outlives every delivery of the pass.
                    let _ = finished.send((attempt, slot));
                }
            });
        }
        drop(finished);
        while !tasks.is_empty() {
            if !join_one(&mut tasks, shutdown).await {
                break;
            }
        }
        // On shutdown, deliveries in flight and the recording of their attempts share one
        // bounded time, from when the stop is seen.
        let grace_ends = || {
            Instant::now() + SHUTDOWN_GRACE.min(deadline.saturating_duration_since(Instant::now()))
        };
        let mut stop_by = None;
        if !tasks.is_empty() {
            let until = *stop_by.insert(grace_ends());
            let finished = tokio::time::timeout_at(until.into(), async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
            if finished.is_err() {
                tracing::warn!(
                    abandoned = tasks.len(),
                    "stopping with deliveries in flight; their leases will lapse and they will be retried"
                );
                tasks.shutdown().await;
            }
        }
        // Every delivery has ended and dropped its sender: the recorder stops once it has
        // recorded what they sent. On shutdown, within the grace (a database that hangs must
        // not hold the stop up); what it leaves unrecorded is delivered again after the
        // restart, when the leases lapse.
        tokio::select! {
            _ = &mut recorder => {}
            _ = shutdown.cancelled() => {
                let until = stop_by.unwrap_or_else(grace_ends);
                if tokio::time::timeout_at(until.into(), &mut recorder).await.is_err() {
                    tracing::warn!("stopping with delivery attempts unrecorded; their events will be delivered again");
                    recorder.abort();
                }
            }
        }
        Ok(n)
    }

    /// Records finished attempts (and takes them out of `finished`) in one transaction. An
    /// attempt that could not be recorded leaves its event leased: when the lease lapses it is
    /// delivered again, with the same event id.
    async fn record(&self, finished: &mut Vec<(String, DeliveryAttempt)>) {
        if finished.is_empty() {
            return;
        }
        let attempts = std::mem::take(finished);
        match self.storage.record_deliveries(&self.owner, &attempts).await {
            Ok(kept) => {
                for ((event_id, _), kept) in attempts.iter().zip(kept) {
                    if !kept {
                        tracing::warn!(%event_id, "lease lost before the attempt was recorded; another worker owns the event");
                    }
                }
            }
            Err(error) => {
                tracing::error!(events = attempts.len(), %error, "could not record the delivery attempts; their leases will lapse and the events be retried");
            }
        }
    }

    /// One attempt, with its metrics and logs; the attempt to record (`None`: not made, the
    /// lease was nearly over).
    async fn deliver(
        &self,
        event: OutboxEvent,
        deadline: Instant,
    ) -> Option<(String, DeliveryAttempt)> {
        let started_at = self.clock.now_ms();
        let started = Instant::now();
        let Some(time_left) = deadline.checked_duration_since(started) else {
            tracing::debug!(event_id = %event.id, "lease nearly over before the attempt; left for the next claim");
            return None;
        };
        let outcome = match self.deliverers.for_channel(event.channel) {
            Some(sender) => {
                match tokio::time::timeout(time_left, sender.send_boxed(&event)).await {
                    Ok(outcome) => outcome,
                    Err(_) => Delivery::Failed {
                        error: format!(
                            "the attempt was still running after {time_left:?}, the time its lease left"
                        ),
                        code: None,
                        after: None,
                    },
                }
            }
            None => Delivery::Permanent {
                error: format!(
                    "the {} channel is not configured on this instance",
                    event.channel.as_str()
                ),
                code: None,
            },
        };
        let attempts = event.attempts + 1;
        let schedule = self.schedules.for_channel(event.channel);
        let (result, code, error) = match &outcome {
            Delivery::Delivered { code } => (DeliveryResult::Delivered, *code, None),
            Delivery::Failed { error, code, after } => {
                let result = match (after, schedule.next_delay(attempts)) {
                    (_, None) => DeliveryResult::Dead,
                    (Some(after), Some(_)) => {
                        DeliveryResult::RetryAt(self.clock.now_ms() + after.as_millis() as i64)
                    }
                    (None, Some(delay)) => {
                        DeliveryResult::RetryAt(self.clock.now_ms() + delay.as_millis() as i64)
                    }
                };
                (result, *code, Some(error.clone()))
            }
            Delivery::Permanent { error, code } => {
                (DeliveryResult::Dead, *code, Some(error.clone()))
            }
            Delivery::Blocked { error, code } => {
                (DeliveryResult::Blocked, *code, Some(error.clone()))
            }
        };
        let label = match &result {
            DeliveryResult::Delivered => "delivered",
            DeliveryResult::RetryAt(_) => "failed",
            DeliveryResult::Dead => "dead",
            DeliveryResult::Blocked => "blocked",
        };
        self.metrics.inc(
            "mpesa_gateway_outbox_deliveries_total",
            &[("channel", event.channel.as_str()), ("result", label)],
        );
        let dependency = match event.channel {
            Channel::Webhook => "webhook",
            Channel::Email => "smtp",
            Channel::Telegram => "telegram",
        };
        match &outcome {
            Delivery::Delivered { .. } => self.health.ok(dependency),
            Delivery::Failed { error, .. } => self.health.failing(dependency, error.clone()),
            // The server answered, refusing this one recipient or message: it is up.
            Delivery::Permanent { code: Some(_), .. } => self.health.ok(dependency),
            Delivery::Permanent { code: None, .. } | Delivery::Blocked { .. } => {}
        }
        match &result {
            DeliveryResult::Delivered => {
                tracing::debug!(event_id = %event.id, channel = event.channel.as_str(), "delivered")
            }
            DeliveryResult::Dead => {
                tracing::error!(event_id = %event.id, channel = event.channel.as_str(), attempts, error = ?error, "outbox event dead-lettered")
            }
            _ => {
                tracing::warn!(event_id = %event.id, channel = event.channel.as_str(), attempts, error = ?error, "delivery failed")
            }
        }
        let attempt = DeliveryAttempt {
            started_at,
            duration_ms: started.elapsed().as_millis() as i64,
            result,
            response_code: code,
            error: error.map(|e| e.chars().take(1000).collect()),
        };
        Some((event.id, attempt))
    }
}

/// Waits for one delivery to finish; false when shutdown came first.
async fn join_one(tasks: &mut JoinSet<()>, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        biased;
        _ = tasks.join_next() => true,
        _ = shutdown.cancelled() => false,
    }
}

//! Long polling: `getUpdates` in a loop, each update handed to [`Bot::process`] in order.
//!
//! Only one instance polls when several share a database: the poller holds the named lease
//! `telegram-poller`, renewed while it works; the others wait and take over when it is
//! released (graceful stop) or lapses (a crash). Telegram forgets an update only once a later
//! `getUpdates` asks for an offset past it, and the offset is stored only after the update is
//! handled, so a poll cut short (shutdown, lost lease) loses nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use tokio_util::sync::CancellationToken;

use super::api::{BotApiError, GetUpdates, allowed_updates};
use super::bot::Bot;
use super::updates::Update;
use crate::bot_ledger::BotLedger;
use crate::health::DependencyHealth;

/// Updates asked for per poll.
const BATCH: u32 = 50;
/// Longest wait after repeated failures.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub struct Poller {
    bot: Arc<Bot>,
    /// The lease (and the bot's handled updates).
    ledger: BotLedger,
    health: Arc<DependencyHealth>,
    /// This instance, as the lease's owner.
    owner: String,
    /// How long Telegram may hold one `getUpdates` open.
    poll_timeout: Duration,
    lease: Duration,
    /// When the lease last taken or renewed lapses at the earliest, by this instance's clock:
    /// the lease's end is stamped before its write is sent, so it cannot lapse sooner.
    held_until: Mutex<Option<Instant>>,
}

/// Why polling stopped.
enum Stop {
    Shutdown,
    LeaseLost,
}

impl Poller {
    pub fn new(
        bot: Arc<Bot>,
        ledger: BotLedger,
        health: Arc<DependencyHealth>,
        owner: String,
        poll_timeout: Duration,
        lease: Duration,
    ) -> Self {
        Poller {
            bot,
            ledger,
            health,
            owner,
            poll_timeout,
            lease,
            held_until: Mutex::new(None),
        }
    }

    /// Polls while this instance holds the lease, waits for it otherwise, until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(owner = %self.owner, "Telegram poller started");
        let standby = (self.lease / 2).clamp(Duration::from_millis(200), Duration::from_secs(5));
        let mut announced_standby = false;
        loop {
            match self.acquire().await {
                Ok(true) => {
                    announced_standby = false;
                    tracing::info!(owner = %self.owner, "this instance polls Telegram for updates");
                    let stop = self.poll_while_leader(&shutdown).await;
                    if let Err(error) = self.ledger.release_poll_lease(&self.owner).await {
                        tracing::warn!(%error, "could not release the Telegram poller lease; it will lapse");
                    }
                    match stop {
                        Stop::Shutdown => break,
                        Stop::LeaseLost => {
                            tracing::warn!(
                                "lost the Telegram poller lease; another instance polls now"
                            )
                        }
                    }
                }
                Ok(false) => {
                    if !announced_standby {
                        tracing::info!("another instance polls Telegram; standing by");
                        announced_standby = true;
                    }
                }
                Err(error) => tracing::warn!(%error, "could not take the Telegram poller lease"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(standby) => {}
            }
        }
        tracing::info!("Telegram poller stopped");
    }

    async fn acquire(&self) -> Result<bool, mpesa_storage::StorageError> {
        let asked = Instant::now();
        let held = self.ledger.take_poll_lease(&self.owner, self.lease).await?;
        *self.held_until.lock().expect("not poisoned") = held.then(|| asked + self.lease);
        Ok(held)
    }

    /// The moment a poll must be given up by, unless the lease is renewed before: a little
    /// before the lease may lapse, when another instance may take it and poll too.
    fn cut_off(&self) -> Instant {
        let margin = (self.lease / 10).min(Duration::from_secs(1));
        match *self.held_until.lock().expect("not poisoned") {
            Some(until) => until.checked_sub(margin).unwrap_or(until),
            None => Instant::now(),
        }
    }

    /// Runs `work` while renewing the lease every third of it. `None` if the lease was lost, or
    /// could not be renewed before it might lapse (a slow or unreachable database): `work` is
    /// then dropped, so that no poll of this instance is open once another may start one. Only
    /// polls are run this way, never the handling of an update.
    async fn leased<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        tokio::pin!(work);
        let mut renew = tokio::time::interval(self.lease / 3);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        renew.tick().await;
        loop {
            let cut_off = self.cut_off();
            tokio::select! {
                out = &mut work => return Some(out),
                _ = tokio::time::sleep_until(cut_off) => {
                    tracing::warn!("the Telegram poller lease could not be renewed in time; polling stops until it is taken again");
                    return None;
                }
                _ = renew.tick() => match tokio::time::timeout_at(cut_off, self.acquire()).await {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) => return None,
                    // The database did not answer: the lease is ours until the cut-off.
                    Ok(Err(error)) => tracing::warn!(%error, "could not renew the Telegram poller lease"),
                    Err(_) => {
                        tracing::warn!("renewing the Telegram poller lease took too long; polling stops until it is taken again");
                        return None;
                    }
                },
            }
        }
    }

    async fn poll_while_leader(&self, shutdown: &CancellationToken) -> Stop {
        let mut backoff = Duration::from_secs(1);
        let mut prepared = false;
        loop {
            if shutdown.is_cancelled() {
                return Stop::Shutdown;
            }
            let wait = match self.poll_once(shutdown, &mut prepared).await {
                Ok(Some(stop)) => return stop,
                Ok(None) => {
                    backoff = Duration::from_secs(1);
                    continue;
                }
                Err(wait) => wait.unwrap_or(backoff),
            };
            backoff = (backoff * 2).min(MAX_BACKOFF);
            // Waiting keeps the lease: the next attempt is ours.
            let slept = self
                .leased(async {
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                })
                .await;
            if slept.is_none() {
                return Stop::LeaseLost;
            }
        }
    }

    /// One `getUpdates` and the handling of what it brought. `Ok(Some)` to stop, `Ok(None)` to
    /// poll again at once, `Err(wait)` to poll again after a pause (Telegram's, if it said).
    async fn poll_once(
        &self,
        shutdown: &CancellationToken,
        prepared: &mut bool,
    ) -> Result<Option<Stop>, Option<Duration>> {
        if !*prepared {
            // Who the bot is (for `/cmd@bot`), and no webhook: Telegram refuses getUpdates
            // while one is set.
            let setup = async {
                self.bot.identify().await?;
                self.bot.api.delete_webhook().await
            };
            match self.leased(setup).await {
                None => return Ok(Some(Stop::LeaseLost)),
                Some(Ok(())) => *prepared = true,
                Some(Err(error)) => return Err(self.telegram_failed(error)),
            }
        }
        let offset = match self.bot.stored_offset().await {
            Ok(offset) => offset,
            Err(error) => {
                tracing::warn!(%error, "could not read the Telegram update offset");
                return Err(None);
            }
        };
        let request = GetUpdates {
            offset,
            timeout: self.poll_timeout.as_secs(),
            limit: BATCH,
            allowed_updates: allowed_updates(),
        };
        // Cut short by a shutdown: safe, as nothing is confirmed before it is handled.
        let polled = tokio::select! {
            _ = shutdown.cancelled() => return Ok(Some(Stop::Shutdown)),
            polled = self.leased(self.bot.api.get_updates(&request)) => polled,
        };
        let updates = match polled {
            None => return Ok(Some(Stop::LeaseLost)),
            Some(Ok(updates)) => {
                self.health.ok("telegram");
                updates
            }
            Some(Err(error)) => {
                if error.code() == Some(409) {
                    // A webhook was set meanwhile: remove it again before the next poll.
                    *prepared = false;
                }
                return Err(self.telegram_failed(error));
            }
        };
        let mut updates: Vec<Update> = updates.into_iter().filter_map(Update::from_value).collect();
        updates.sort_by_key(|u| u.update_id);
        for update in updates {
            let update_id = update.update_id;
            // Handling is not cut short by the lease or a shutdown (a push half sent is worse
            // than a late stop); the lease is renewed meanwhile.
            let handled = self.keep_lease_while(self.bot.process(update)).await;
            if let Err(error) = handled {
                tracing::warn!(update_id, %error, "Telegram update not handled; it will come again");
                return Err(error.retry_after());
            }
            if shutdown.is_cancelled() {
                return Ok(Some(Stop::Shutdown));
            }
        }
        Ok(None)
    }

    /// Runs `work` to its end, renewing the lease meanwhile.
    async fn keep_lease_while<T>(&self, work: impl Future<Output = T>) -> T {
        tokio::pin!(work);
        let mut renew = tokio::time::interval(self.lease / 3);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        renew.tick().await;
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = renew.tick() => {
                    if let Ok(false) = self.acquire().await {
                        tracing::warn!("the Telegram poller lease lapsed while an update was handled");
                    }
                }
            }
        }
    }

    /// Logs a failed call and says how long Telegram asked us to wait, if it did.
    fn telegram_failed(&self, error: BotApiError) -> Option<Duration> {
        self.health.failing("telegram", error.to_string());
        match &error {
            BotApiError::TooManyRequests { retry_after, .. } => Some(*retry_after),
            BotApiError::Api { code: 409, .. } => {
                tracing::warn!(%error, "Telegram reports a conflict: a webhook is set, or another program polls with this token");
                None
            }
            BotApiError::Unauthorized { .. } => {
                tracing::error!(%error, "Telegram refuses the bot token; check TELEGRAM_BOT_TOKEN");
                None
            }
            _ => {
                tracing::warn!(%error, "Telegram getUpdates failed; retrying");
                None
            }
        }
    }
}

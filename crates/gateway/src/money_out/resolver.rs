//! The resolver: the initiator layer's worker (like the payments' reconciler). Requests whose
//! result did not come in time are asked about by Transaction Status with backoff — never sent
//! again — and owners not yet told of a final request are told.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Initiator;
use crate::health::DependencyHealth;

/// How often the resolver looks for due work when idle.
const TICK: Duration = Duration::from_millis(500);
/// How many requests one pass claims.
const BATCH: u32 = 50;
/// A claim hides a request from other instances this long (a crashed instance's claims lapse).
const CLAIM_LEASE_MS: i64 = 60_000;

pub async fn run(
    initiator: Initiator,
    health: std::sync::Arc<DependencyHealth>,
    stop: CancellationToken,
) {
    loop {
        match initiator.resolve_due(CLAIM_LEASE_MS, BATCH).await {
            Ok(n) if n >= BATCH as usize => continue,
            Ok(_) => {}
            Err(e) => {
                health.failing("database", e.to_string());
                tracing::warn!(error = %e, "the resolver could not read its work");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

/// How long a pending refund or payout may stay without a stored request before the sweep sends
/// it: far longer than its own process takes to store it, so the sweep only meets the ones left
/// behind (and if it meets one still in flight, the request id's gate lets only one send).
pub const ORPHAN_GRACE_MS: i64 = 120_000;
/// How often the sweep looks (on the gateway's clock, `ORPHAN_GRACE_MS` is measured).
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Sends the refunds and payouts whose process stopped between their commit and the storing of
/// their request (a crash, a database that failed in between): without this they would stay
/// pending with nothing sent, a refund refusing every later refund of its payment and a payout
/// holding its share of the daily limit.
pub async fn sweep_orphans(
    refunds: super::Refunds,
    payouts: super::Payouts,
    health: std::sync::Arc<DependencyHealth>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
        }
        if let Err(e) = refunds.send_orphans(ORPHAN_GRACE_MS).await {
            health.failing("database", e.to_string());
            tracing::warn!(error = %e, "the sweep could not read the refunds");
        }
        if payouts.enabled()
            && let Err(e) = payouts.send_orphans(ORPHAN_GRACE_MS).await
        {
            health.failing("database", e.to_string());
            tracing::warn!(error = %e, "the sweep could not read the payouts");
        }
    }
}

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

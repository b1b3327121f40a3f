//! What the gateway last saw of each dependency it talks to, for `/health` and the dashboard.
//! Passive: nothing here calls Daraja, Telegram or SMTP just to be asked. The database is the
//! exception: [`HealthChecks`] (the service behind `/health` and `/metrics`) reads from it, and
//! proves that writes commit with [`WriteProbe`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use daraja::DarajaClient;
use mpesa_storage::{ClusterStatus, OutboxCounts, Storage};
use serde::Serialize;

use crate::metrics::Metrics;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DependencyState {
    /// `ok`, `failing` or `unknown` (not used since start).
    pub status: &'static str,
    pub last_checked: Option<String>,
    /// The last error, when failing (never a secret: errors are built without them).
    pub error: Option<String>,
}

/// The last outcome seen: success, when (Unix ms), and the error.
type LastSeen = (bool, i64, Option<String>);

#[derive(Default)]
pub struct DependencyHealth {
    states: Mutex<BTreeMap<&'static str, LastSeen>>,
}

impl DependencyHealth {
    pub fn ok(&self, name: &'static str) {
        self.set(name, true, None);
    }

    pub fn failing(&self, name: &'static str, error: impl Into<String>) {
        self.set(name, false, Some(error.into()));
    }

    fn set(&self, name: &'static str, ok: bool, error: Option<String>) {
        let mut s = self.states.lock().unwrap_or_else(|e| e.into_inner());
        s.insert(name, (ok, crate::ids::now_ms(), error));
    }

    pub fn state(&self, name: &'static str) -> DependencyState {
        let s = self.states.lock().unwrap_or_else(|e| e.into_inner());
        match s.get(name) {
            None => DependencyState {
                status: "unknown",
                last_checked: None,
                error: None,
            },
            Some((ok, at, error)) => DependencyState {
                status: if *ok { "ok" } else { "failing" },
                last_checked: Some(crate::ids::rfc3339(*at)),
                error: error.clone(),
            },
        }
    }
}

/// How long a successful write probe answers for `/health`.
const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
/// While writes fail, `/health` tries again this often (so it sees them come back soon).
const PROBE_AGAIN_AFTER_FAILURE: std::time::Duration = std::time::Duration::from_secs(1);
/// A real write that failed for want of the database keeps `/health` failing this long.
pub const RECENT_WRITE_FAILURE_MS: i64 = 5_000;
/// A probe that takes longer fails.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether a write transaction commits, on the path every write takes: one single-row UPSERT
/// into this instance's own row (no other instance ever waits for it), at most every few
/// seconds however often `/health` is asked, one at a time, the last answer cached.
#[derive(Default)]
pub struct WriteProbe {
    last: tokio::sync::Mutex<Option<(std::time::Instant, Result<(), String>)>>,
}

impl WriteProbe {
    /// Failing when the probe fails, or when a real write failed for want of the database in
    /// the last [`RECENT_WRITE_FAILURE_MS`] (a small probe may commit while real writes fail).
    pub async fn check(
        &self,
        storage: &dyn mpesa_storage::Storage,
        instance_id: &str,
    ) -> Result<(), String> {
        self.probe(storage, instance_id).await?;
        match storage.last_write_failure() {
            Some((at, error)) if crate::ids::now_ms() - at < RECENT_WRITE_FAILURE_MS => {
                Err(format!(
                    "a write failed {} s ago: {error}",
                    (crate::ids::now_ms() - at) / 1000
                ))
            }
            _ => Ok(()),
        }
    }

    /// The last probe's answer if still fresh, else a new probe's.
    async fn probe(
        &self,
        storage: &dyn mpesa_storage::Storage,
        instance_id: &str,
    ) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, result)) = &*last {
            let fresh_for = if result.is_ok() {
                PROBE_EVERY
            } else {
                PROBE_AGAIN_AFTER_FAILURE
            };
            if at.elapsed() < fresh_for {
                return result.clone();
            }
        }
        let result = match tokio::time::timeout(
            PROBE_TIMEOUT,
            storage.write_probe(instance_id, crate::ids::now_ms()),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no commit within {PROBE_TIMEOUT:?}")),
        };
        if let Err(error) = &result {
            tracing::warn!(%error, "database writes are failing");
        }
        *last = Some((std::time::Instant::now(), result.clone()));
        result
    }
}

/// The database as `/health` reports it.
#[derive(Debug)]
pub struct DatabaseHealth {
    /// It answered a read within two seconds.
    pub reachable: bool,
    /// Whether writes commit ([`WriteProbe::check`]); not tried when reads fail.
    pub writes: Result<(), String>,
    /// The outbox per status, when the database answered in time.
    pub outbox: Option<OutboxCounts>,
    /// `sqlite`, `postgres` or `mysql`.
    pub backend: &'static str,
    /// On a Galera node: its state.
    pub cluster: Option<ClusterStatus>,
}

impl DatabaseHealth {
    /// Healthy: reads answer and writes commit.
    pub fn ok(&self) -> bool {
        self.reachable && self.writes.is_ok()
    }
}

/// The service behind `/health` and `/metrics`: the database asked now, and the figures of the
/// Daraja client. Cheap to clone.
#[derive(Clone)]
pub struct HealthChecks {
    storage: Arc<dyn Storage>,
    daraja: DarajaClient,
    metrics: Arc<Metrics>,
    probe: Arc<WriteProbe>,
    instance_id: String,
}

impl HealthChecks {
    pub fn new(
        storage: Arc<dyn Storage>,
        daraja: DarajaClient,
        metrics: Arc<Metrics>,
        instance_id: String,
    ) -> Self {
        HealthChecks {
            storage,
            daraja,
            metrics,
            probe: Arc::default(),
            instance_id,
        }
    }

    /// Which database is behind the gateway (`sqlite`, `postgres`, `mysql`).
    pub fn backend(&self) -> &'static str {
        self.storage.backend().as_str()
    }

    /// Asks the database: a read, a write (see [`WriteProbe`]), the outbox counts (also set as
    /// the `mpesa_gateway_outbox_events` gauges) and, on Galera, the node's state.
    pub async fn database(&self) -> DatabaseHealth {
        let db = tokio::time::timeout(Duration::from_secs(2), self.storage.ping()).await;
        let reachable = matches!(db, Ok(Ok(())));
        let writes = if reachable {
            self.probe
                .check(self.storage.as_ref(), &self.instance_id)
                .await
        } else {
            Err("not tried: the database does not answer reads".to_owned())
        };
        let outbox = if reachable {
            tokio::time::timeout(Duration::from_secs(2), self.storage.outbox_counts())
                .await
                .ok()
                .and_then(Result::ok)
        } else {
            None
        };
        if let Some(c) = &outbox {
            for (status, n) in [
                ("pending", c.pending),
                ("delivered", c.delivered),
                ("dead", c.dead),
                ("blocked", c.blocked),
            ] {
                self.metrics.set(
                    "mpesa_gateway_outbox_events",
                    &[("status", status)],
                    n as f64,
                );
            }
        }
        DatabaseHealth {
            reachable,
            writes,
            outbox,
            backend: self.backend(),
            cluster: self.storage.cluster_status(),
        }
    }

    /// The Prometheus text of every metric, the Daraja client's call counts brought up to date.
    pub fn metrics_text(&self) -> String {
        let d = self.daraja.metrics();
        self.metrics.set(
            "mpesa_gateway_daraja_token_requests_total",
            &[],
            d.token_requests as f64,
        );
        for call in &d.calls {
            self.metrics.set(
                "mpesa_gateway_daraja_calls_total",
                &[("api", call.api), ("outcome", &call.outcome)],
                call.count as f64,
            );
        }
        self.metrics.render()
    }
}

//! What the gateway last saw of each dependency it talks to, for `/health` and the dashboard.
//! Passive: nothing here calls Daraja, Telegram or SMTP just to be asked. The database is the
//! exception: `/health` reads from it, and proves that writes commit with [`WriteProbe`].

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

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

//! What the gateway last saw of each dependency it talks to, for `/health` and the dashboard.
//! Passive: nothing here calls Daraja, Telegram or SMTP just to be asked.

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

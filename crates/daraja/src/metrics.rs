//! Counters the gateway's `/metrics` reads: token requests, and Daraja calls by API and outcome
//! (`ok`, Daraja's error code, or the kind of failure).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::endpoint::Api;

/// Distinct (API, outcome) pairs kept; past this, new outcomes are counted as `other`.
const MAX_SERIES: usize = 256;

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    token_requests: AtomicU64,
    token_failures: AtomicU64,
    calls: Mutex<BTreeMap<(Api, String), u64>>,
}

impl Metrics {
    pub(crate) fn token_requested(&self) {
        self.token_requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn token_failed(&self) {
        self.token_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn call_finished(&self, api: Api, outcome: String) {
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let key = if calls.len() >= MAX_SERIES && !calls.contains_key(&(api, outcome.clone())) {
            (api, "other".to_owned())
        } else {
            (api, outcome)
        };
        *calls.entry(key).or_insert(0) += 1;
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        MetricsSnapshot {
            token_requests: self.token_requests.load(Ordering::Relaxed),
            token_failures: self.token_failures.load(Ordering::Relaxed),
            calls: calls
                .iter()
                .map(|((api, outcome), count)| CallCount {
                    api: api.as_str(),
                    outcome: outcome.clone(),
                    count: *count,
                })
                .collect(),
        }
    }
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricsSnapshot {
    /// Token requests sent to `/oauth/v1/generate` (each cache refresh is one).
    pub token_requests: u64,
    /// Token requests that did not give a token.
    pub token_failures: u64,
    /// Calls to the other APIs (and OAuth), by outcome, sorted by API then outcome.
    pub calls: Vec<CallCount>,
}

impl MetricsSnapshot {
    /// How many calls to `api` ended with `outcome`.
    pub fn count(&self, api: Api, outcome: &str) -> u64 {
        self.calls
            .iter()
            .filter(|c| c.api == api.as_str() && c.outcome == outcome)
            .map(|c| c.count)
            .sum()
    }

    /// How many calls to `api` were made, whatever their outcome.
    pub fn total(&self, api: Api) -> u64 {
        self.calls
            .iter()
            .filter(|c| c.api == api.as_str())
            .map(|c| c.count)
            .sum()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallCount {
    /// `stk_push`, `stk_query`, … (see `Api::as_str`).
    pub api: &'static str,
    /// `ok`, an error code such as `500.001.1001`, or `timeout`, `not_sent`, `transport`,
    /// `malformed`, `http_<status>`.
    pub outcome: String,
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_caps_series() {
        let m = Metrics::default();
        m.token_requested();
        m.call_finished(Api::StkPush, "ok".into());
        m.call_finished(Api::StkPush, "ok".into());
        m.call_finished(Api::StkPush, "timeout".into());
        let s = m.snapshot();
        assert_eq!(s.token_requests, 1);
        assert_eq!(s.count(Api::StkPush, "ok"), 2);
        assert_eq!(s.total(Api::StkPush), 3);
        for i in 0..400 {
            m.call_finished(Api::StkQuery, format!("500.{i}"));
        }
        let s = m.snapshot();
        assert!(s.calls.len() <= MAX_SERIES + 1);
        assert_eq!(s.total(Api::StkQuery), 400);
    }
}

//! The gateway's time. The rules that hang on time read it from the one `Clock` that
//! `App::build_with` gives every service, so tests move time instead of sleeping:
//!
//! * the payment service and its reconciler: when a pending payment is asked about, when it
//!   expires, when a `/pay` is stale; C2B booking and Pull Transactions' window; callback
//!   ingestion and the re-drive of callbacks left `received`;
//! * payment links: whether a link has expired (it stops taking payments, at the pay page and
//!   at the paybill);
//! * the initiator layer and its owners (refunds, payouts, receipt checks): when a request with
//!   no result is asked about by Transaction Status, with backoff, and when it is held for a
//!   person; the East Africa Time day a payout counts against for `PAYOUT_DAILY_LIMIT`;
//! * the outbox worker: when an event is due and when its retry will be.
//!
//! The times these services store are read from it too. Daraja's client keeps its own clock
//! (`daraja::clock`, of the same trait: token lifetimes, STK timestamps), which the shared token
//! store reads. `ids::now_ms` is the wall clock, for what decides nothing.

use std::fmt;
use std::sync::Arc;

pub use daraja::clock::{ManualClock, SystemClock};

/// A shared source of "now"; the system clock unless a test gives another.
#[derive(Clone)]
pub struct Clock(Arc<dyn daraja::clock::Clock>);

impl Clock {
    pub fn system() -> Self {
        Clock(Arc::new(SystemClock))
    }

    /// A clock a test holds and moves (`ManualClock::advance`).
    pub fn manual(clock: Arc<ManualClock>) -> Self {
        Clock(clock)
    }

    /// Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.0.now().timestamp_millis()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Clock").field(&self.0).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_moved() {
        let start = chrono::DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
        let manual = Arc::new(ManualClock::new(start));
        let clock = Clock::manual(manual.clone());
        assert_eq!(clock.now_ms(), 1_700_000_000_000);
        manual.advance(chrono::Duration::seconds(61));
        assert_eq!(clock.now_ms(), 1_700_000_061_000);
        let system = Clock::system().now_ms();
        assert!((system - crate::ids::now_ms()).abs() < 5_000);
    }
}

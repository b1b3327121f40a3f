//! The outbox worker: retry schedules per channel, the lease, the idle poll, each channel's
//! timeout.

use std::time::Duration;

use crate::outbox::{RetrySchedule, RetrySchedules};

use super::reader::{Reader, parse};
use super::{ConfigError, Source};

#[derive(Debug, Clone)]
pub struct OutboxSettings {
    /// `OUTBOX_RETRY_WEBHOOK`, `OUTBOX_RETRY_EMAIL`, `OUTBOX_RETRY_TELEGRAM`.
    pub schedules: RetrySchedules,
    /// `OUTBOX_LEASE`: how long a claimed event is this instance's; after a crash, how long
    /// until another instance (or the restarted one) takes it over.
    pub lease: Duration,
    /// `OUTBOX_POLL_INTERVAL`: how often an idle worker looks for retries that came due.
    pub poll_interval: Duration,
    /// `WEBHOOK_TIMEOUT`: one webhook attempt, connection included.
    pub webhook_timeout: Duration,
    /// `SMTP_TIMEOUT`: each SMTP command.
    pub smtp_timeout: Duration,
}

pub(super) fn read<S: Source>(r: &Reader<S>) -> Result<OutboxSettings, ConfigError> {
    Ok(OutboxSettings {
        schedules: RetrySchedules {
            webhook: r.read_or_default("OUTBOX_RETRY_WEBHOOK", RetrySchedule::parse)?,
            email: r.read_or_default("OUTBOX_RETRY_EMAIL", RetrySchedule::parse)?,
            telegram: r.read_or_default("OUTBOX_RETRY_TELEGRAM", RetrySchedule::parse)?,
        },
        lease: r.read_or_default(
            "OUTBOX_LEASE",
            parse::duration_at_least(Duration::from_secs(1)),
        )?,
        poll_interval: r.read_or_default(
            "OUTBOX_POLL_INTERVAL",
            parse::duration_at_least(Duration::from_millis(10)),
        )?,
        webhook_timeout: r.read_or_default(
            "WEBHOOK_TIMEOUT",
            parse::duration_at_least(Duration::from_millis(100)),
        )?,
        smtp_timeout: r.read_or_default(
            "SMTP_TIMEOUT",
            parse::duration_at_least(Duration::from_millis(100)),
        )?,
    })
}

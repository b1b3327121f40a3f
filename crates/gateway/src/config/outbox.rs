//! The outbox worker: retry schedules per channel, the lease, the idle poll, each channel's
//! timeout.

use std::time::Duration;

use super::reader::{Reader, parse, parse_duration};
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

/// `OUTBOX_RETRY_*`: how long to wait after each failed attempt of one channel
/// (`30s,2m,1h,1d`); what the outbox does with it is in `outbox::schedule`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    /// After the first failed attempt, the second, …
    pub(crate) delays: Vec<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedules {
    pub webhook: RetrySchedule,
    pub email: RetrySchedule,
    pub telegram: RetrySchedule,
}

impl Default for RetrySchedules {
    /// The defaults of `OUTBOX_RETRY_*` in the table of variables. Webhooks: about 3 days,
    /// like Stripe. Email and Telegram: about 1 day.
    fn default() -> Self {
        let default = |name| {
            super::default_of(name)
                .and_then(|text| RetrySchedule::parse(text).ok())
                .expect("the table's default schedule")
        };
        RetrySchedules {
            webhook: default("OUTBOX_RETRY_WEBHOOK"),
            email: default("OUTBOX_RETRY_EMAIL"),
            telegram: default("OUTBOX_RETRY_TELEGRAM"),
        }
    }
}

impl RetrySchedule {
    /// `30s,2m,1h,1d`; plain numbers are seconds; `ms` is allowed for tests.
    pub fn parse(text: &str) -> Result<Self, String> {
        let delays = text
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(parse_duration)
            .collect::<Result<Vec<_>, _>>()?;
        if delays.is_empty() {
            return Err("the schedule needs at least one delay".into());
        }
        Ok(RetrySchedule { delays })
    }
}

/// Written back the way it is configured: `30s,2m,1h`.
impl std::fmt::Display for RetrySchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, d) in self.delays.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let ms = d.as_millis();
            match ms {
                _ if ms % 86_400_000 == 0 => write!(f, "{}d", ms / 86_400_000)?,
                _ if ms % 3_600_000 == 0 => write!(f, "{}h", ms / 3_600_000)?,
                _ if ms % 60_000 == 0 => write!(f, "{}m", ms / 60_000)?,
                _ if ms % 1000 == 0 => write!(f, "{}s", ms / 1000)?,
                _ => write!(f, "{ms}ms")?,
            }
        }
        Ok(())
    }
}

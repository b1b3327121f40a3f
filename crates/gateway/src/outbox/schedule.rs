//! Retry schedules at work: how long to wait after each failed attempt, per channel. The
//! schedules themselves (`OUTBOX_RETRY_*`, read and written back) are configuration
//! (`config::RetrySchedule`). After the last delay's attempt fails, the event is dead-lettered.

use std::time::Duration;

use mpesa_storage::Channel;
use rand::Rng;

pub use crate::config::{RetrySchedule, RetrySchedules};

impl RetrySchedules {
    pub fn for_channel(&self, channel: Channel) -> &RetrySchedule {
        match channel {
            Channel::Webhook => &self.webhook,
            Channel::Email => &self.email,
            Channel::Telegram => &self.telegram,
        }
    }
}

impl RetrySchedule {
    /// After `attempts` failed attempts (1 = the first failed), when to try again, or `None`
    /// when no attempt is left. ±10% jitter spreads retries of many events.
    pub fn next_delay(&self, attempts: i32) -> Option<Duration> {
        let base = *self.delays.get(usize::try_from(attempts - 1).ok()?)?;
        let ms = base.as_millis() as i64;
        let jitter = if ms >= 10 {
            rand::thread_rng().gen_range(-(ms / 10)..=(ms / 10))
        } else {
            0
        };
        Some(Duration::from_millis((ms + jitter).max(0) as u64))
    }

    /// Attempts in all: the first, then one per delay.
    pub fn max_attempts(&self) -> i32 {
        self.delays.len() as i32 + 1
    }

    pub fn total(&self) -> Duration {
        self.delays.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_counts() {
        let s = RetrySchedule::parse("30s, 2m,1h,1d,500ms,7").unwrap();
        assert_eq!(s.max_attempts(), 7);
        assert_eq!(
            s.total(),
            Duration::from_millis(30_000 + 120_000 + 3_600_000 + 86_400_000 + 500 + 7_000)
        );
        assert!(RetrySchedule::parse("").is_err());
        assert!(RetrySchedule::parse("5 parsecs").is_err());
        assert_eq!(
            RetrySchedule::parse("30s,120s,90m,1d,200ms")
                .unwrap()
                .to_string(),
            "30s,2m,90m,1d,200ms"
        );
    }

    #[test]
    fn webhooks_retry_for_about_three_days() {
        let s = RetrySchedules::default().webhook;
        let days = s.total().as_secs_f64() / 86_400.0;
        assert!((2.9..=3.2).contains(&days), "{days}");
    }

    #[test]
    fn delays_follow_the_schedule_then_stop() {
        let s = RetrySchedule::parse("100s,1000s").unwrap();
        let first = s.next_delay(1).unwrap().as_secs_f64();
        assert!((90.0..=110.0).contains(&first), "{first}");
        let second = s.next_delay(2).unwrap().as_secs_f64();
        assert!((900.0..=1100.0).contains(&second), "{second}");
        assert_eq!(s.next_delay(3), None);
        assert_eq!(s.next_delay(0), None);
    }
}

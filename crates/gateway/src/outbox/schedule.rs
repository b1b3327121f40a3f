//! Retry schedules: how long to wait after each failed attempt, per channel. Configurable with
//! `OUTBOX_RETRY_WEBHOOK`, `OUTBOX_RETRY_EMAIL`, `OUTBOX_RETRY_TELEGRAM` as comma-separated
//! durations (`30s,2m,1h,1d`). After the last delay's attempt fails, the event is dead-lettered.

use std::time::Duration;

use mpesa_storage::Channel;
use rand::Rng;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
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
            crate::config::default_of(name)
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

/// `500ms`, `30s`, `2m`, `1h`, `1d`; a plain number is seconds.
pub fn parse_duration(part: &str) -> Result<Duration, String> {
    let part = part.trim();
    let (number, unit) = match part.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => part.split_at(i),
        None => (part, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{part:?} is not a duration like 30s or 2m"))?;
    Ok(match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86_400),
        _ => return Err(format!("{part:?}: use ms, s, m, h or d")),
    })
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

//! Time as Daraja uses it: East Africa Time (UTC+3, no daylight saving), written
//! `YYYYMMDDHHmmss`. Computed from UTC and a fixed offset, so the host's time zone (and `TZ`)
//! never matters. The clock is injectable so tests can pin or move it.

use std::fmt;
use std::sync::Mutex;

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};

pub use mpesa_domain::eat::EAT_OFFSET_SECONDS;

/// East Africa Time as a chrono offset.
pub fn eat() -> FixedOffset {
    FixedOffset::east_opt(EAT_OFFSET_SECONDS).expect("+03:00 is a valid offset")
}

/// Where the client reads the time from.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock (UTC).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until moved: for tests.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock(Mutex::new(start))
    }

    pub fn set(&self, instant: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = instant;
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `YYYYMMDDHHmmss` in East Africa Time for an instant.
pub fn eat_timestamp(instant: DateTime<Utc>) -> String {
    instant
        .with_timezone(&eat())
        .format("%Y%m%d%H%M%S")
        .to_string()
}

/// Unix milliseconds for a `YYYYMMDDHHmmss` East Africa Time text (`TransactionDate`,
/// `TransTime`, `InitiatedTime`); `None` unless it is exactly 14 digits of a real time.
pub fn parse_eat_timestamp(text: &str) -> Option<i64> {
    let t = text.trim();
    if t.len() != 14 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(t, "%Y%m%d%H%M%S").ok()?;
    Some(
        eat()
            .from_local_datetime(&naive)
            .single()?
            .timestamp_millis(),
    )
}

/// Unix milliseconds for B2C's `DD.MM.YYYY HH:mm:ss` East Africa Time text.
pub fn parse_eat_dotted(text: &str) -> Option<i64> {
    let naive = NaiveDateTime::parse_from_str(text.trim(), "%d.%m.%Y %H:%M:%S").ok()?;
    Some(
        eat()
            .from_local_datetime(&naive)
            .single()?
            .timestamp_millis(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eat_is_utc_plus_three() {
        let instant = Utc.with_ymd_and_hms(2024, 7, 10, 6, 15, 41).unwrap();
        assert_eq!(eat_timestamp(instant), "20240710091541");
        assert_eq!(
            parse_eat_timestamp("20240710091541"),
            Some(instant.timestamp_millis())
        );
        // Crossing midnight and the year.
        let late = Utc.with_ymd_and_hms(2025, 12, 31, 22, 30, 0).unwrap();
        assert_eq!(eat_timestamp(late), "20260101013000");
    }

    #[test]
    fn refuses_what_is_not_a_timestamp() {
        assert_eq!(parse_eat_timestamp("2024071009154"), None);
        assert_eq!(parse_eat_timestamp("20241310091541"), None);
        assert_eq!(parse_eat_timestamp("2024-07-10 09:1"), None);
        let dotted = Utc.with_ymd_and_hms(2024, 7, 6, 19, 48, 52).unwrap();
        assert_eq!(
            parse_eat_dotted("06.07.2024 22:48:52"),
            Some(dotted.timestamp_millis())
        );
    }
}

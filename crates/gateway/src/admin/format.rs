//! How values read on the dashboard: shillings with separators, East Africa Time, pretty JSON.
//! Everything here returns plain text; the templates escape it.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use daraja::clock::eat;
pub use mpesa_domain::eat::{DAY_MS, day_start as eat_day_start};

pub use mpesa_domain::{group_thousands as thousands, ksh as money};

/// `22 Nov 2026 11:01` in East Africa Time.
pub fn when(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.with_timezone(&eat()).format("%d %b %Y %H:%M").to_string())
        .unwrap_or_default()
}

/// `22 Nov 2026 11:01:02.345 EAT`, for timelines where order within a second matters.
pub fn when_precise(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&eat())
                .format("%d %b %Y %H:%M:%S%.3f EAT")
                .to_string()
        })
        .unwrap_or_default()
}

/// `2026-11-22T11:01:02+03:00`, for `<time datetime>`.
pub fn machine_time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.with_timezone(&eat()).to_rfc3339())
        .unwrap_or_default()
}

/// `2026-11-22`: the East Africa Time date of `ms`.
pub fn eat_date(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.with_timezone(&eat()).format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// The start (Unix ms) of an East Africa Time date written `YYYY-MM-DD`.
pub fn parse_eat_date(text: &str) -> Option<i64> {
    let date = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()?;
    let midnight = date.and_hms_opt(0, 0, 0)?;
    eat()
        .from_local_datetime(&midnight)
        .single()
        .map(|t| t.timestamp_millis())
}

/// `3 minutes`, rounded up.
pub fn minutes(d: Duration) -> String {
    let m = d.as_secs().div_ceil(60).max(1);
    if m == 1 {
        "1 minute".to_owned()
    } else {
        format!("{m} minutes")
    }
}

/// `1 payment`, `1,204 payments`.
pub fn count(n: i64, one: &str, many: &str) -> String {
    format!("{} {}", thousands(n), if n == 1 { one } else { many })
}

/// `90 seconds`, `5 minutes`, `2 hours`: the largest unit that divides the duration.
pub fn duration_words(d: Duration) -> String {
    let s = d.as_secs();
    let (n, unit) = if s >= 3600 && s.is_multiple_of(3600) {
        (s / 3600, "hour")
    } else if s >= 60 && s.is_multiple_of(60) {
        (s / 60, "minute")
    } else {
        (s, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// A stored JSON text, indented; anything that is not JSON comes back as it was.
pub fn pretty_json(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_owned())
}

/// A raw body as text to read: pretty JSON when it is JSON, the text itself when it is UTF-8,
/// and otherwise the bytes decoded with replacement characters (the flag says so).
pub fn body_text(body: &[u8]) -> (String, bool) {
    match std::str::from_utf8(body) {
        Ok(text) => (pretty_json(text), false),
        Err(_) => (String::from_utf8_lossy(body).into_owned(), true),
    }
}

/// The first `max` characters of a text, with `…` when cut.
pub fn preview(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// `completed` → `Completed`, `timed_out` → `Timed out`.
pub fn label(code: &str) -> String {
    let spaced = code.replace('_', " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The CSS class of a status badge (`s-completed`…); only our own status words reach it.
pub fn badge_class(code: &str) -> String {
    let safe: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    format!("badge s-{safe}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_times_read_well() {
        assert_eq!(money(1_250), "KSh 1,250");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(-1_234_567), "-1,234,567");
        assert_eq!(when(1_720_592_141_000), "10 Jul 2024 09:15");
        assert_eq!(
            when_precise(1_720_592_141_007),
            "10 Jul 2024 09:15:41.007 EAT"
        );
        assert_eq!(minutes(Duration::from_secs(61)), "2 minutes");
        assert_eq!(minutes(Duration::from_secs(1)), "1 minute");
        assert_eq!(label("timed_out"), "Timed out");
        assert_eq!(count(1, "payment", "payments"), "1 payment");
        assert_eq!(count(1_204, "payment", "payments"), "1,204 payments");
        assert_eq!(duration_words(Duration::from_secs(7200)), "2 hours");
        assert_eq!(duration_words(Duration::from_secs(300)), "5 minutes");
        assert_eq!(duration_words(Duration::from_secs(90)), "90 seconds");
    }

    #[test]
    fn east_africa_days() {
        // 2024-07-10 00:30 EAT is 2024-07-09 21:30 UTC.
        let t = parse_eat_date("2024-07-10").unwrap() + 30 * 60_000;
        assert_eq!(eat_date(t), "2024-07-10");
        assert_eq!(eat_day_start(t), parse_eat_date("2024-07-10").unwrap());
        assert_eq!(
            parse_eat_date("2024-07-10").unwrap(),
            1_720_558_800_000,
            "21:00 UTC the day before"
        );
        assert_eq!(parse_eat_date("2024-13-01"), None);
        assert_eq!(parse_eat_date("<script>"), None);
    }

    #[test]
    fn bodies_become_text() {
        assert_eq!(
            body_text(br#"{"a":1}"#),
            ("{\n  \"a\": 1\n}".to_owned(), false)
        );
        assert_eq!(body_text(b"not json"), ("not json".to_owned(), false));
        let (text, lossy) = body_text(&[0x66, 0xff, 0x6f]);
        assert!(lossy);
        assert_eq!(text, "f\u{fffd}o");
        assert_eq!(preview("abcdef", 3), "abc…");
        assert_eq!(preview("abc", 3), "abc");
    }
}

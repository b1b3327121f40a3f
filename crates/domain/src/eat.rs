//! East Africa Time, the one zone M-Pesa and a Kenyan shop's days are in: UTC+03:00 all year,
//! no daylight saving. Every place that turns an instant into a Kenyan time or day uses these
//! (the Daraja client's timestamps, the dashboard, the bot's "today", storage's daily totals).

/// The offset of East Africa Time from UTC.
pub const EAT_OFFSET_SECONDS: i32 = 3 * 3600;
/// [`EAT_OFFSET_SECONDS`] in milliseconds.
pub const EAT_OFFSET_MS: i64 = EAT_OFFSET_SECONDS as i64 * 1000;
pub const DAY_MS: i64 = 86_400_000;

/// The start (Unix ms) of the East Africa Time day that holds `ms`.
pub fn day_start(ms: i64) -> i64 {
    day_number(ms) * DAY_MS - EAT_OFFSET_MS
}

/// The East Africa Time date of `ms` as days since 1970-01-01.
pub fn day_number(ms: i64) -> i64 {
    (ms + EAT_OFFSET_MS).div_euclid(DAY_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_begin_at_midnight_in_nairobi() {
        // 2026-01-01 00:00 UTC is 03:00 EAT: the day began at 2025-12-31 21:00 UTC.
        assert_eq!(day_start(1_767_225_600_000), 1_767_214_800_000);
        // 20:59 UTC is still the same EAT day; 21:00 UTC is the next.
        assert_eq!(day_start(1_767_214_800_000), 1_767_214_800_000);
        assert_eq!(day_start(1_767_214_799_999), 1_767_128_400_000);
        assert_eq!(day_number(1_767_214_800_000), 20_454);
    }
}

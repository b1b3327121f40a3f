//! Identifiers, secrets and the wall clock.

use rand::Rng;
use rand::distributions::Alphanumeric;

/// `pay_0192f3…`: a prefix that says what it is, then a UUIDv7 in hex, so ids sort by creation
/// time (the storage paginates on them).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Unix time in milliseconds, from the wall clock.
///
/// Not for rules: whatever decides on time (a payment's or link's expiry, when a refund or
/// payout is asked about or held, the East Africa Time day a payout counts against, an outbox
/// retry, a callback re-drive) reads the service's [`crate::clock::Clock`], which tests move.
/// This one is for what decides nothing in the gateway's time: the CLI's output and the
/// records it writes by hand, `/health` and log stamps, a webhook signature's `t` (checked
/// against the merchant's real clock), and the doors' own bookkeeping that is not yet on a
/// service (dashboard sessions and pages, API keys, the Telegram bot's offsets, chat links and
/// poller lease, the link status the API and dashboard show).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A random text of letters and digits from the OS generator (API keys, session tokens, the
/// callback path secret).
pub fn random_token(len: usize) -> String {
    rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// `bytes` random bytes in lowercase hex. The callback path secret is hex because Daraja refuses
/// callback URLs containing words such as `exe`, `cmd` or `sql`, which letters could spell.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut buf);
    hex::encode(buf)
}

/// SHA-256 in lowercase hex (how API keys and session tokens are stored).
pub fn sha256_hex(data: impl AsRef<[u8]>) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data.as_ref()))
}

/// Constant-time comparison for secrets.
pub fn secrets_equal(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Milliseconds as an RFC 3339 UTC text, e.g. `2026-11-22T08:01:02.345Z`.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Milliseconds as East Africa Time for people, e.g. `22 Nov 2026 11:01`.
pub fn eat_display(ms: i64) -> String {
    let eat = daraja::clock::eat();
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&eat)
                .format("%d %b %Y %H:%M:%S EAT")
                .to_string()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_creation() {
        let a = new_id("pay");
        let b = new_id("pay");
        assert!(a < b, "{a} {b}");
        assert!(a.starts_with("pay_") && a.len() == 36);
    }

    #[test]
    fn times_render() {
        assert_eq!(rfc3339(1_720_592_141_000), "2024-07-10T06:15:41.000Z");
        assert_eq!(eat_display(1_720_592_141_000), "10 Jul 2024 09:15:41 EAT");
    }

    #[test]
    fn secret_comparison() {
        assert!(secrets_equal("abc", "abc"));
        assert!(!secrets_equal("abc", "abd"));
        assert!(!secrets_equal("abc", "abcd"));
    }
}

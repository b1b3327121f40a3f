//! How many wrong passwords the dashboard takes, and from whom.
//!
//! Only failures count, per (username, client address), kept in the database so that every
//! instance sharing it counts them together (`sign_in_failures`). A pair gets [`FREE_FAILURES`]
//! tries, then waits 1 s, 2 s, 4 s… (at most [`MAX_WAIT`]) between tries; a right password clears
//! its pair. So wrong passwords for `amina` from elsewhere never keep the real Amina out: only
//! her own address's failures for her name do, or her address being abusive itself
//! ([`ADDRESS_FAILURES`] failures for any names within [`ADDRESS_WINDOW`]). An attempt is counted
//! *before* its password is checked (and cleared when it was right), so parallel guesses cannot
//! slip past the count; a refused attempt is not checked at all, which also spares the Argon2
//! work.
//!
//! The client address is the peer's, or the one a trusted proxy names (`TRUSTED_PROXIES`, see
//! `http::client_addr`): behind a proxy that is not declared, every client shares the proxy's
//! address, and an abusive client then gets all of them refused together.

use std::time::Duration;

use mpesa_storage::{Millis, SignInFailures};

/// Failures a (username, address) pair may have before it waits between tries.
pub const FREE_FAILURES: i64 = 5;
/// The longest wait between two tries of one pair.
pub const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// Failures from one address, for any usernames, within [`ADDRESS_WINDOW`], after which the
/// address is refused altogether (even with a right password) until they age out.
pub const ADDRESS_FAILURES: i64 = 50;
pub const ADDRESS_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failures older than this are forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Whether an attempt may go on: `None`, or `Some(when)` it may be tried again (Unix ms).
pub fn decide(f: &SignInFailures, now: Millis) -> Option<Millis> {
    if f.address_failures >= ADDRESS_FAILURES {
        return Some(now + 60_000);
    }
    let over = f.pair_failures - FREE_FAILURES;
    if over < 0 {
        return None;
    }
    let wait = Duration::from_secs(1u64 << over.clamp(0, 20)).min(MAX_WAIT);
    let at = f.pair_last_failed_at.unwrap_or(now) + wait.as_millis() as i64;
    (at > now).then_some(at)
}

/// Usernames are counted trimmed, lower-cased and cut to 64 characters, so that `AMINA ` and
/// `amina` are one name and huge names cannot grow the table.
pub fn normalise(username: &str) -> String {
    username
        .trim()
        .chars()
        .take(64)
        .collect::<String>()
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failures(pair: i64, last: Option<Millis>, address: i64) -> SignInFailures {
        SignInFailures {
            pair_failures: pair,
            pair_last_failed_at: last,
            address_failures: address,
        }
    }

    #[test]
    fn a_pair_gets_free_tries_then_waits_longer_and_longer() {
        let now = 1_000_000;
        for n in 0..FREE_FAILURES {
            assert_eq!(decide(&failures(n, Some(now), n), now), None);
        }
        assert_eq!(
            decide(&failures(FREE_FAILURES, Some(now), 5), now),
            Some(now + 1_000)
        );
        assert_eq!(
            decide(&failures(FREE_FAILURES + 3, Some(now), 8), now),
            Some(now + 8_000)
        );
        assert_eq!(
            decide(&failures(FREE_FAILURES + 3, Some(now - 8_000), 8), now),
            None,
            "the wait is over"
        );
        assert_eq!(
            decide(&failures(1_000, Some(now), 10), now),
            Some(now + MAX_WAIT.as_millis() as i64)
        );
    }

    #[test]
    fn an_abusive_address_is_refused_whoever_it_names() {
        let now = 5;
        assert!(decide(&failures(0, None, ADDRESS_FAILURES), now).is_some());
        assert!(decide(&failures(0, None, ADDRESS_FAILURES - 1), now).is_none());
    }

    #[test]
    fn names_are_counted_case_blind_and_bounded() {
        assert_eq!(normalise(" AMINA "), "amina");
        assert_eq!(normalise(&"x".repeat(500)).len(), 64);
    }
}

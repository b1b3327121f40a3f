//! Sign-in attempts, limited per client address and per username within a sliding window.
//!
//! Kept in memory, per gateway process: a restart forgets it, and several instances behind a
//! load balancer each allow the limit. That is enough to make password guessing slow (Argon2
//! already costs each guess); it is not an account lockout. Every attempt counts, failed or
//! not, and is counted *before* the password is checked, so parallel requests cannot slip past
//! the limit; a successful sign-in clears its username's count.
//!
//! Behind a reverse proxy every client has the proxy's address, so the per-address limit then
//! applies to all clients together; the per-username limit still holds.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Attempts from one address within [`WINDOW`].
pub const PER_ADDRESS: usize = 20;
/// Attempts for one username within [`WINDOW`].
pub const PER_USERNAME: usize = 5;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Past this many tracked keys, expired ones are dropped on the next attempt.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Address(IpAddr),
    Username(String),
}

#[derive(Default)]
pub struct SignInLimiter {
    attempts: Mutex<HashMap<Key, VecDeque<Instant>>>,
}

impl SignInLimiter {
    /// Records an attempt, or refuses it with how long to wait when the address or the username
    /// has used up its attempts.
    pub fn attempt(
        &self,
        address: Option<IpAddr>,
        username: &str,
        now: Instant,
    ) -> Result<(), Duration> {
        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        if attempts.len() > PRUNE_ABOVE {
            attempts.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|last| now.duration_since(*last) < WINDOW)
            });
        }
        let mut keys = vec![(Key::Username(normalise(username)), PER_USERNAME)];
        if let Some(address) = address {
            keys.push((Key::Address(address), PER_ADDRESS));
        }
        let mut wait = Duration::ZERO;
        for (key, limit) in &keys {
            if let Some(times) = attempts.get_mut(key) {
                while times
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= WINDOW)
                {
                    times.pop_front();
                }
                if times.len() >= *limit {
                    let oldest = times.front().copied().unwrap_or(now);
                    wait = wait.max(WINDOW.saturating_sub(now.duration_since(oldest)));
                }
            }
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        for (key, _) in keys {
            attempts.entry(key).or_default().push_back(now);
        }
        Ok(())
    }

    /// A successful sign-in: the username starts afresh.
    pub fn succeeded(&self, username: &str) {
        self.attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&Key::Username(normalise(username)));
    }
}

/// Usernames are counted case-blind and cut to a bounded length, so the map cannot be grown
/// with huge keys.
fn normalise(username: &str) -> String {
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

    #[test]
    fn a_username_gets_its_attempts_then_waits() {
        let limiter = SignInLimiter::default();
        let start = Instant::now();
        for i in 0..PER_USERNAME {
            let address = Some(IpAddr::from([10, 0, 0, i as u8]));
            assert!(limiter.attempt(address, "Alice", start).is_ok());
        }
        let refused = limiter
            .attempt(Some(IpAddr::from([10, 0, 0, 99])), " alice ", start)
            .unwrap_err();
        assert!(refused > Duration::from_secs(14 * 60) && refused <= WINDOW);
        // Others are not affected; after the window, alice may try again.
        assert!(limiter.attempt(None, "bob", start).is_ok());
        assert!(limiter.attempt(None, "alice", start + WINDOW).is_ok());
    }

    #[test]
    fn an_address_gets_its_attempts_across_usernames() {
        let limiter = SignInLimiter::default();
        let address = Some(IpAddr::from([192, 0, 2, 1]));
        let now = Instant::now();
        for i in 0..PER_ADDRESS {
            assert!(limiter.attempt(address, &format!("user{i}"), now).is_ok());
        }
        assert!(limiter.attempt(address, "someone-else", now).is_err());
        assert!(
            limiter
                .attempt(Some(IpAddr::from([192, 0, 2, 2])), "someone-else", now)
                .is_ok()
        );
    }

    #[test]
    fn success_clears_the_username() {
        let limiter = SignInLimiter::default();
        let now = Instant::now();
        for _ in 0..PER_USERNAME {
            limiter.attempt(None, "carol", now).unwrap();
        }
        assert!(limiter.attempt(None, "carol", now).is_err());
        limiter.succeeded("CAROL");
        assert!(limiter.attempt(None, "carol", now).is_ok());
    }
}

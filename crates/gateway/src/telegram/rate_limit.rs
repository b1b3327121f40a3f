//! Per-chat rate limit for the bot: at most `limit` updates in any `window` (a sliding log).
//! A chat over the limit is told once per window, then ignored until it slows down: replying
//! to every message of a flood would be a flood of our own.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Five commands in ten seconds: more than a person types, less than a script.
pub const DEFAULT_LIMIT: usize = 5;
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);

/// Chats tracked before idle ones are forgotten.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Over the limit: say so, once.
    Warn {
        retry_after: Duration,
    },
    /// Over the limit and already told.
    Ignore,
}

#[derive(Default)]
struct ChatLog {
    accepted: VecDeque<Instant>,
    warned: bool,
}

pub struct ChatRateLimiter {
    limit: usize,
    window: Duration,
    chats: Mutex<HashMap<i64, ChatLog>>,
}

impl Default for ChatRateLimiter {
    fn default() -> Self {
        ChatRateLimiter::new(DEFAULT_LIMIT, DEFAULT_WINDOW)
    }
}

impl ChatRateLimiter {
    pub fn new(limit: usize, window: Duration) -> Self {
        ChatRateLimiter {
            limit: limit.max(1),
            window,
            chats: Mutex::new(HashMap::new()),
        }
    }

    pub fn check(&self, chat_id: i64, now: Instant) -> Verdict {
        let mut chats = self.chats.lock().expect("rate limiter lock");
        if chats.len() > PRUNE_ABOVE {
            let window = self.window;
            chats.retain(|_, log| {
                log.accepted
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
        }
        let log = chats.entry(chat_id).or_default();
        while log
            .accepted
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            log.accepted.pop_front();
        }
        if log.accepted.len() < self.limit {
            log.accepted.push_back(now);
            log.warned = false;
            return Verdict::Allow;
        }
        if log.warned {
            return Verdict::Ignore;
        }
        log.warned = true;
        let oldest = *log.accepted.front().expect("the log is full");
        Verdict::Warn {
            retry_after: self.window.saturating_sub(now.duration_since(oldest)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_limit_warns_once_then_recovers() {
        let limiter = ChatRateLimiter::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(
                limiter.check(1, t0 + Duration::from_secs(i)),
                Verdict::Allow
            );
        }
        assert_eq!(
            limiter.check(1, t0 + Duration::from_secs(4)),
            Verdict::Warn {
                retry_after: Duration::from_secs(6)
            }
        );
        assert_eq!(
            limiter.check(1, t0 + Duration::from_secs(5)),
            Verdict::Ignore
        );
        // Other chats are not affected.
        assert_eq!(
            limiter.check(2, t0 + Duration::from_secs(5)),
            Verdict::Allow
        );
        // The first message leaves the window at t0 + 10 s.
        assert_eq!(
            limiter.check(1, t0 + Duration::from_secs(10)),
            Verdict::Allow
        );
        assert_eq!(
            limiter.check(1, t0 + Duration::from_secs(10)),
            Verdict::Warn {
                retry_after: Duration::from_secs(1)
            }
        );
    }
}

//! When the reconciler asks about a payment again: the domain's [`NextCheck`] as the stored
//! schedule, with exponential backoff and jitter. Used by the reconciler and by the payment
//! service whenever a question has been answered (or not).

use mpesa_domain::state_machine::NextCheck;
use mpesa_storage::CheckSchedule;
use rand::Rng;

/// Longest wait between two questions before the expiry.
const BACKOFF_CAP_MS: i64 = 120_000;
/// Past the expiry, while Daraja does not answer: ask at most every 15 minutes (about a hundred
/// questions a day per payment, however long Daraja is down).
const SLOW_BACKOFF_CAP_MS: i64 = 15 * 60_000;

/// Delay before the next query after `attempts` queries: 15 s, 30 s, 60 s… capped at `cap_ms`,
/// ±20% jitter so many payments do not query in lockstep (Daraja's spike arrest).
pub fn backoff_ms(attempts: i32, base_ms: i64, cap_ms: i64) -> i64 {
    let step = base_ms.max(1000) / 4;
    let exp = step
        .saturating_mul(1i64 << attempts.clamp(0, 16))
        .min(cap_ms);
    let jitter = rand::thread_rng().gen_range(-(exp / 5)..=(exp / 5));
    (exp + jitter).max(1000)
}

/// The domain's [`NextCheck`] as the stored schedule, with this reconciler's backoff.
pub fn schedule(next: NextCheck, now: i64, attempts: i32, base_ms: i64) -> CheckSchedule {
    match next {
        NextCheck::At(at) => CheckSchedule::At(at),
        NextCheck::Backoff { not_after_ms, slow } => {
            let cap = if slow {
                SLOW_BACKOFF_CAP_MS
            } else {
                BACKOFF_CAP_MS
            };
            CheckSchedule::At(
                now.saturating_add(backoff_ms(attempts, base_ms, cap))
                    .min(not_after_ms),
            )
        }
        NextCheck::Never => CheckSchedule::Clear,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for _ in 0..100 {
            let first = backoff_ms(0, 60_000, BACKOFF_CAP_MS);
            assert!((12_000..=18_000).contains(&first), "{first}");
            let later = backoff_ms(3, 60_000, BACKOFF_CAP_MS);
            assert!((96_000..=144_000).contains(&later), "{later}");
            let capped = backoff_ms(30, 60_000, BACKOFF_CAP_MS);
            assert!(capped <= 144_000, "{capped}");
            let slow = backoff_ms(30, 60_000, SLOW_BACKOFF_CAP_MS);
            assert!((720_000..=1_080_000).contains(&slow), "{slow}");
        }
    }

    #[test]
    fn schedules_follow_the_domain() {
        assert_eq!(
            schedule(NextCheck::At(5), 0, 0, 60_000),
            CheckSchedule::At(5)
        );
        assert_eq!(
            schedule(NextCheck::Never, 0, 0, 60_000),
            CheckSchedule::Clear
        );
        assert_eq!(
            schedule(
                NextCheck::Backoff {
                    not_after_ms: 1_000,
                    slow: false
                },
                0,
                0,
                60_000
            ),
            CheckSchedule::At(1_000),
            "never past the expiry"
        );
    }
}

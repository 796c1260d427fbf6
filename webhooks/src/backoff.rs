//! When a failed delivery is tried again: the first retry within 5 s, then each wait doubles
//! (capped), with jitter so that receivers coming back are not hit by every retry at once;
//! after the retry window (24 h by default) the delivery is given up as `failed`.

use std::time::Duration;

use rand::Rng;

/// The retry policy of deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait before the first retry (before jitter).
    pub first: Duration,
    /// The longest wait between two attempts.
    pub max: Duration,
    /// How long after its first attempt a delivery is still retried.
    pub retry_for: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(5),
            max: Duration::from_secs(60 * 60),
            retry_for: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again after this long.
    RetryIn(Duration),
    /// The window has passed: the delivery failed.
    GiveUp,
}

impl Backoff {
    /// After the `attempts`-th attempt failed, `elapsed` since the delivery's first attempt.
    /// The wait is drawn between half and all of `first × 2^(attempts − 1)` (capped at `max`):
    /// "equal jitter", never sooner than half the schedule.
    pub fn after_failure(&self, attempts: u32, elapsed: Duration) -> Next {
        if elapsed >= self.retry_for {
            return Next::GiveUp;
        }
        let doubling = 2u32.saturating_pow(attempts.saturating_sub(1).min(30));
        let full = self.first.saturating_mul(doubling).min(self.max);
        let wait = full.mul_f64(rand::thread_rng().gen_range(0.5..=1.0));
        // The last retry falls at the end of the window, not past it.
        Next::RetryIn(
            wait.min(self.retry_for - elapsed)
                .max(Duration::from_millis(1)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    /// Plays a receiver that never answers 2xx through the whole policy on paused time: the
    /// first retry comes within 5 s, the waits double up to the cap, retries go on for at
    /// least 24 hours, and then the delivery fails.
    #[tokio::test(start_paused = true)]
    async fn a_dead_receiver_is_retried_with_doubling_waits_for_24_hours_then_given_up() {
        let backoff = Backoff::default();
        let started = Instant::now();
        let mut attempts = 0u32;
        let mut waits = Vec::new();
        loop {
            attempts += 1; // the attempt fails
            match backoff.after_failure(attempts, started.elapsed()) {
                Next::RetryIn(wait) => {
                    waits.push(wait);
                    tokio::time::sleep(wait).await;
                }
                Next::GiveUp => break,
            }
        }
        assert!(
            waits[0] <= Duration::from_secs(5),
            "first retry after {:?}",
            waits[0]
        );
        assert!(waits[0] >= Duration::from_millis(2500));
        for pair in waits.windows(2).take(8) {
            // Below the cap each full wait doubles, and jitter keeps a wait within [½, 1] of
            // its full wait: a wait is never shorter than the one before.
            assert!(pair[1] >= pair[0], "{pair:?}");
        }
        assert!(waits.iter().all(|w| *w <= backoff.max));
        assert!(
            started.elapsed() >= backoff.retry_for,
            "gave up after {:?}",
            started.elapsed()
        );
        assert!(started.elapsed() < backoff.retry_for + backoff.max);
        assert!((25..70).contains(&attempts), "{attempts} attempts");
    }

    #[test]
    fn waits_are_capped_and_never_zero() {
        let backoff = Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_secs(1),
            retry_for: Duration::from_secs(10),
        };
        for attempts in 1..100 {
            match backoff.after_failure(attempts, Duration::from_secs(1)) {
                Next::RetryIn(wait) => {
                    assert!(wait <= Duration::from_secs(1) && wait > Duration::ZERO)
                }
                Next::GiveUp => panic!("gave up inside the window"),
            }
        }
        assert_eq!(
            backoff.after_failure(3, Duration::from_secs(10)),
            Next::GiveUp
        );
    }
}

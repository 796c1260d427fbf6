//! Which failures heal by themselves, and how long to wait before trying again.
//!
//! A projection must never park an event because the database was briefly unwell: a parked
//! `OrderPlaced` strands its order's saga. So every failure is classified here, in one place:
//!
//! - **Transient**: the connection or the pool (sqlx I/O, TLS, protocol, pool timeout or closed,
//!   worker crashed), and the SQLSTATEs that describe the moment rather than the event: class
//!   `08` (connection exception), `40001` (serialization failure), `40P01` (deadlock), `55P03`
//!   (lock not available: `lock_timeout`), `57014` (query canceled: `statement_timeout`),
//!   `57P01`..`57P03` (admin or crash shutdown, cannot connect now) and class `53`
//!   (insufficient resources). The batch is rolled back, nothing is acked, and it is tried
//!   again after a [`Backoff`] pause, for as long as it takes.
//! - **Deterministic**: everything else (a payload that does not decode, a constraint
//!   violation, a projection's own error). Trying again cannot help; the event is parked.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Whether `error`, or any error in its chain of causes, is a transient one (see the module
/// documentation).
pub fn is_transient(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        if let Some(error) = cause.downcast_ref::<sqlx::Error>() {
            return is_transient_sqlx(error);
        }
        cause.is::<std::io::Error>()
    })
}

fn is_transient_sqlx(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(error) => error
            .code()
            .is_some_and(|code| is_transient_sqlstate(&code)),
        _ => false,
    }
}

/// The SQLSTATEs that say "not now" rather than "never".
fn is_transient_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(
            code,
            "40001" | "40P01" | "55P03" | "57014" | "57P01" | "57P02" | "57P03"
        )
}

/// Exponential backoff with jitter: pauses grow from `first`, doubling, up to `max`; each is
/// drawn between half and all of its step so that workers failing together do not retry in
/// lockstep.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    first: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    pub(crate) fn new(first: Duration, max: Duration) -> Self {
        let first = first.max(Duration::from_millis(1));
        Self {
            first,
            max: max.max(first),
            step: first,
        }
    }

    /// The pause before the next attempt.
    pub(crate) fn next_pause(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let half = step / 2;
        half + half.mul_f64(random_fraction())
    }

    /// Starts again from the first step, after a success.
    pub(crate) fn reset(&mut self) {
        self.step = self.first;
    }
}

/// A number in `[0, 1)`. Jitter needs no cryptographic quality: every `RandomState` gets fresh
/// SipHash keys, which is random enough without another dependency.
fn random_fraction() -> f64 {
    let bits = RandomState::new().build_hasher().finish() >> 11;
    bits as f64 / (1_u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    fn database_error(code: &str) -> anyhow::Error {
        #[derive(Debug)]
        struct Fake(String);
        impl std::fmt::Display for Fake {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "fake database error {}", self.0)
            }
        }
        impl std::error::Error for Fake {}
        impl sqlx::error::DatabaseError for Fake {
            fn message(&self) -> &str {
                "fake"
            }
            fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
                Some(self.0.as_str().into())
            }
            fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
                self
            }
            fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
                self
            }
            fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
                self
            }
            fn kind(&self) -> sqlx::error::ErrorKind {
                sqlx::error::ErrorKind::Other
            }
        }
        anyhow::Error::new(sqlx::Error::Database(Box::new(Fake(code.to_owned()))))
    }

    #[test]
    fn the_moment_is_transient_the_event_is_not() {
        for code in [
            "08006", "08P01", "40001", "40P01", "55P03", "57014", "57P01", "57P03", "53300",
        ] {
            assert!(is_transient(&database_error(code)), "{code}");
        }
        for code in ["23505", "23503", "22012", "42P01", "25P02"] {
            assert!(!is_transient(&database_error(code)), "{code}");
        }
        assert!(is_transient(&anyhow::Error::new(sqlx::Error::PoolTimedOut)));
        assert!(!is_transient(&anyhow::Error::new(sqlx::Error::RowNotFound)));
        assert!(!is_transient(&anyhow::anyhow!("a projection's own error")));
    }

    #[test]
    fn a_cause_deep_in_the_chain_counts() {
        let error = Err::<(), _>(database_error("40P01"))
            .context("applying an event")
            .context("a batch")
            .unwrap_err();
        assert!(is_transient(&error));
    }

    #[test]
    fn pauses_double_up_to_the_cap_with_jitter() {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        let pauses: Vec<Duration> = (0..12).map(|_| backoff.next_pause()).collect();
        assert!(pauses[0] >= Duration::from_millis(25) && pauses[0] <= Duration::from_millis(50));
        assert!(pauses[1] >= Duration::from_millis(50) && pauses[1] <= Duration::from_millis(100));
        assert!(pauses.iter().all(|p| *p <= Duration::from_secs(5)));
        assert!(pauses[11] >= Duration::from_millis(2500));
        backoff.reset();
        assert!(backoff.next_pause() <= Duration::from_millis(50));
    }
}

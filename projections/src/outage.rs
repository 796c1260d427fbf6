//! Degraded mode, made visible: how long something this process depends on (the NATS
//! connection, the relay's publishing, a projection's consumer) has been failing.
//!
//! While NATS or the relay is down the engine keeps accepting commands (the event store is the
//! truth) and reads fall behind; an operator must hear of it. Each watched thing keeps an
//! [`Outage`]: its first failure is a WARN at once ([`Outage::fail`] says it started), the same
//! outage lasting longer than a bound ([`ERROR_AFTER`] by default, `COMMERCE_OUTAGE_ERROR_AFTER`)
//! is reported once more at ERROR ([`Outage::overdue`]), and the recovery is an INFO with how
//! long it lasted. `/health/ready` shows what is down, since when and why.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// How long an outage is reported at WARN before it is reported, once, at ERROR.
pub const ERROR_AFTER: Duration = Duration::from_secs(60);

/// Something that is down: since when and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Down {
    /// When the outage began (its first failure).
    pub since: DateTime<Utc>,
    /// The latest failure, as an operator reads it.
    pub reason: String,
}

#[derive(Debug)]
struct Current {
    down: Down,
    started: Instant,
    escalated: bool,
}

/// What a failure meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The first failure of an outage: log it at WARN.
    Started,
    /// One more failure of an outage already reported.
    Continuing,
}

/// One watched thing's availability, shared by clones.
#[derive(Debug, Clone, Default)]
pub struct Outage(Arc<Mutex<Option<Current>>>);

impl Outage {
    /// Records a failure, starting an outage unless one is running.
    pub fn fail(&self, reason: impl Into<String>) -> Failure {
        let reason = reason.into();
        let mut current = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match current.as_mut() {
            Some(running) => {
                running.down.reason = reason;
                Failure::Continuing
            }
            None => {
                *current = Some(Current {
                    down: Down {
                        since: Utc::now(),
                        reason,
                    },
                    started: Instant::now(),
                    escalated: false,
                });
                Failure::Started
            }
        }
    }

    /// Ends the outage, if one is running: how long it lasted.
    pub fn recover(&self) -> Option<Duration> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .map(|ended| ended.started.elapsed())
    }

    /// The running outage, when there is one.
    pub fn down(&self) -> Option<Down> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|current| current.down.clone())
    }

    /// The running outage, once (the first call after it has lasted `after`): report it at ERROR.
    pub fn overdue(&self, after: Duration) -> Option<(Down, Duration)> {
        let mut current = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let running = current.as_mut()?;
        let lasted = running.started.elapsed();
        if running.escalated || lasted < after {
            return None;
        }
        running.escalated = true;
        Some((running.down.clone(), lasted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_warns_once_escalates_once_and_recovers() {
        let outage = Outage::default();
        assert_eq!(outage.down(), None);
        assert_eq!(outage.fail("connection refused"), Failure::Started);
        let since = outage.down().unwrap().since;
        assert_eq!(outage.fail("timed out"), Failure::Continuing);
        let down = outage.down().unwrap();
        assert_eq!((down.since, down.reason.as_str()), (since, "timed out"));

        assert_eq!(outage.overdue(Duration::from_secs(3600)), None);
        assert!(outage.overdue(Duration::ZERO).is_some());
        assert_eq!(outage.overdue(Duration::ZERO), None, "escalated only once");

        assert!(outage.recover().is_some());
        assert_eq!(outage.down(), None);
        assert_eq!(outage.recover(), None);
        assert_eq!(outage.fail("again"), Failure::Started);
        assert!(
            outage.overdue(Duration::ZERO).is_some(),
            "a new outage escalates anew"
        );
    }
}

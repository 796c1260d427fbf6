//! Latency histograms (microseconds, 3 significant figures) and what a run of requests did.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies recorded from many tasks at once, and the outcomes that were not successes.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    histogram: Histogram<u64>,
    ok: u64,
    /// Non-success HTTP statuses by code.
    statuses: BTreeMap<u16, u64>,
    /// Requests that got no response at all (connection errors, timeouts).
    errors: u64,
    first_error: Option<String>,
}

impl Recorder {
    pub fn new() -> Self {
        // Auto-resizing: nothing we measure is refused for being too slow.
        let mut histogram = match Histogram::<u64>::new(3) {
            Ok(histogram) => histogram,
            Err(error) => unreachable!("3 significant figures are always valid: {error}"),
        };
        histogram.auto(true);
        Self {
            inner: Arc::new(Mutex::new(Inner {
                histogram,
                ok: 0,
                statuses: BTreeMap::new(),
                errors: 0,
                first_error: None,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A success that took `latency`.
    pub fn ok(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut inner = self.lock();
        inner.ok += 1;
        let _ = inner.histogram.record(micros);
    }

    /// A response with a status that is not a success.
    pub fn status(&self, status: u16) {
        *self.lock().statuses.entry(status).or_default() += 1;
    }

    /// No response.
    pub fn error(&self, error: &anyhow::Error) {
        let mut inner = self.lock();
        inner.errors += 1;
        inner
            .first_error
            .get_or_insert_with(|| format!("{error:#}"));
    }

    /// The figures so far, over `elapsed` of wall time.
    pub fn summary(&self, elapsed: Duration) -> Summary {
        let inner = self.lock();
        let h = &inner.histogram;
        let ms = |q: f64| (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0);
        let seconds = elapsed.as_secs_f64();
        Summary {
            ok: inner.ok,
            statuses: inner
                .statuses
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            errors: inner.errors,
            first_error: inner.first_error.clone(),
            seconds,
            per_second: if seconds > 0.0 {
                inner.ok as f64 / seconds
            } else {
                0.0
            },
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: (!h.is_empty()).then(|| h.max() as f64 / 1000.0),
            mean_ms: (!h.is_empty()).then(|| h.mean() / 1000.0),
        }
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

/// What a run of requests did.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Successes (2xx, or what the scenario counts as done).
    pub ok: u64,
    /// Other statuses by code.
    pub statuses: BTreeMap<String, u64>,
    /// Requests without a response.
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    pub seconds: f64,
    /// Successes per second of wall time.
    pub per_second: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub mean_ms: Option<f64>,
}

impl Summary {
    /// How many responses carried `status`.
    pub fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status.to_string()).copied().unwrap_or(0)
    }

    /// Everything that was not a success, for a table's note: `409×3 err×1`.
    pub fn failures(&self) -> String {
        let mut parts: Vec<String> = self
            .statuses
            .iter()
            .map(|(status, n)| format!("{status}×{n}"))
            .collect();
        if self.errors > 0 {
            parts.push(format!("err×{}", self.errors));
        }
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_out_in_milliseconds() {
        let recorder = Recorder::new();
        for ms in 1..=100 {
            recorder.ok(Duration::from_millis(ms));
        }
        recorder.status(409);
        let summary = recorder.summary(Duration::from_secs(2));
        assert_eq!(summary.ok, 100);
        assert_eq!(summary.per_second, 50.0);
        let p50 = summary.p50_ms.unwrap();
        assert!((49.0..=51.0).contains(&p50), "{p50}");
        assert_eq!(summary.count(409), 1);
        assert_eq!(summary.failures(), "409×1");
    }
}

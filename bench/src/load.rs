//! The two ways of offering load: a closed loop (N connections, each sends its next request as
//! soon as the previous one answered: the maximum throughput) and an open loop (requests at a
//! fixed rate whatever the answers: latency at a given load, without coordinated omission).

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::stats::{Recorder, Summary};

/// What one request did: the HTTP status it got (2xx counts as a success).
pub type Status = anyhow::Result<u16>;

fn record(recorder: &Recorder, started: Instant, result: Status) {
    match result {
        Ok(status) if (200..300).contains(&status) => recorder.ok(started.elapsed()),
        Ok(status) => recorder.status(status),
        Err(error) => recorder.error(&error),
    }
}

/// A request numbering shared by every run of a scenario, so that runs never repeat one.
#[derive(Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// `connections` workers send `op(n)` back to back for `duration`; `n` comes from `counter`.
pub async fn closed_loop<F, Fut>(
    connections: usize,
    duration: Duration,
    counter: &Counter,
    op: F,
) -> Summary
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Status> + Send + 'static,
{
    let recorder = Recorder::new();
    let op = Arc::new(op);
    let start = Instant::now();
    let deadline = start + duration;
    let mut workers = JoinSet::new();
    for _ in 0..connections {
        let (op, recorder, counter) = (op.clone(), recorder.clone(), counter.clone());
        workers.spawn(async move {
            while Instant::now() < deadline {
                let started = Instant::now();
                let result = op(counter.next()).await;
                record(&recorder, started, result);
            }
        });
    }
    while workers.join_next().await.is_some() {}
    recorder.summary(start.elapsed())
}

/// What an open-loop run offered and what it got.
#[derive(Debug, Clone, Serialize)]
pub struct OpenLoop {
    pub offered_per_second: f64,
    /// Requests not sent because `max_in_flight` were already waiting (the engine fell behind).
    pub not_sent: u64,
    #[serde(flatten)]
    pub summary: Summary,
}

/// Starts `op(n)` at `rate` per second for `duration`, whatever the answers, with at most
/// `max_in_flight` outstanding. Latency counts from when a request was due, not from when it
/// left, so a stalled engine shows in the figures instead of slowing the load.
pub async fn open_loop<F, Fut>(
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
    counter: &Counter,
    op: F,
) -> OpenLoop
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Status> + Send + 'static,
{
    let recorder = Recorder::new();
    let schedule = open_loop_with(rate, duration, max_in_flight, counter, |n, due| {
        let recorder = recorder.clone();
        let future = op(n);
        async move { record(&recorder, due, future.await) }
    })
    .await;
    OpenLoop {
        offered_per_second: rate,
        not_sent: schedule.not_sent,
        summary: recorder.summary(schedule.sending),
    }
}

/// How an open loop went, for callers that record their own figures.
pub struct Schedule {
    /// How long sending took (the nominal duration unless the loop fell behind).
    pub sending: Duration,
    pub not_sent: u64,
    pub sent: u64,
}

/// The open loop underneath: `task(n, due)` is spawned for each request, `due` being when it
/// should have started. Waits for every task before returning.
pub async fn open_loop_with<F, Fut>(
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
    counter: &Counter,
    task: F,
) -> Schedule
where
    F: Fn(u64, Instant) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let start = Instant::now();
    let end = start + duration;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    let (mut sent, mut not_sent) = (0_u64, 0_u64);
    for k in 0_u32.. {
        let due = start + interval * k;
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due).await;
        // Reap finished tasks so the set does not grow with the run.
        while tasks.try_join_next().is_some() {}
        if in_flight.load(Ordering::Relaxed) >= max_in_flight {
            not_sent += 1;
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let future = task(counter.next(), due);
        let in_flight = in_flight.clone();
        tasks.spawn(async move {
            future.await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
        sent += 1;
    }
    let sending = start.elapsed().max(duration);
    while tasks.join_next().await.is_some() {}
    Schedule {
        sending,
        not_sent,
        sent,
    }
}

/// Runs `op(n)` for `count` numbers from `counter`, `concurrency` at a time (setup and warm-up
/// passes that must cover every item exactly once).
pub async fn for_each<F, Fut>(concurrency: usize, count: usize, counter: &Counter, op: F) -> Summary
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Status>,
{
    use futures::StreamExt;

    let recorder = Recorder::new();
    let start = Instant::now();
    let numbers: Vec<u64> = (0..count).map(|_| counter.next()).collect();
    futures::stream::iter(numbers)
        .map(|n| {
            let future = op(n);
            async move {
                let started = Instant::now();
                (started, future.await)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .for_each(|(started, result)| {
            record(&recorder, started, result);
            async {}
        })
        .await;
    recorder.summary(start.elapsed())
}

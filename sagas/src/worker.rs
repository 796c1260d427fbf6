//! Saga workers: claim due sagas from `saga_deadlines` and drive them, several at a time.
//! Any number of workers, in any number of processes, share the table.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::checkout::{Run, SagaDriver};
use crate::deadlines::{self, Claimed, SAGA_DUE_CHANNEL};

/// The longest a claimed saga goes without renewing its lease between steps.
const RENEW_AFTER: Duration = Duration::from_secs(1);

/// How a worker paces itself.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Names the worker in `saga_deadlines.locked_by`.
    pub name: String,
    /// Sagas driven at once.
    pub concurrency: usize,
    /// How long a claim holds without renewal; a dead worker's sagas wait this long at most.
    pub lease: Duration,
    /// How often to look for due sagas when no wake-up is announced.
    pub poll_interval: Duration,
    /// How long a saga whose step failed (database or provider down) waits before a retry.
    pub retry_after: Duration,
}

impl WorkerConfig {
    /// A lease long enough to wait out a payment timeout without renewing mid-call.
    pub fn for_payment_timeout(payment_timeout: Duration) -> Self {
        Self {
            name: format!(
                "saga-worker-{}-{}",
                std::process::id(),
                uuid::Uuid::now_v7().simple()
            ),
            concurrency: 32,
            lease: payment_timeout + Duration::from_secs(5),
            poll_interval: Duration::from_millis(200),
            retry_after: Duration::from_secs(1),
        }
    }
}

/// Claims and drives due sagas until cancelled.
pub async fn run_worker(
    driver: Arc<SagaDriver>,
    config: WorkerConfig,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let mut listener = match PgListener::connect_with(&driver.pool).await {
        Ok(mut listener) => match listener.listen(SAGA_DUE_CHANNEL).await {
            Ok(()) => Some(listener),
            Err(_) => None,
        },
        Err(_) => None,
    };
    let mut running: JoinSet<()> = JoinSet::new();
    tracing::info!(worker = %config.name, "saga worker started");
    loop {
        while running.try_join_next().is_some() {}
        let free = config.concurrency.saturating_sub(running.len());
        // Taken before the claim: the lease, counted from here, ends no later than the row says.
        let claimed_at = Instant::now();
        let claimed = if free > 0 {
            match deadlines::claim(&driver.pool, &config.name, free as i64, config.lease).await {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "claiming sagas failed");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let idle = claimed.is_empty();
        for claim in claimed {
            running.spawn(drive_one(driver.clone(), config.clone(), claim, claimed_at));
        }
        if !idle {
            continue;
        }
        let wake = async {
            match listener.as_mut() {
                Some(listener) => {
                    let _ = tokio::time::timeout(config.poll_interval, listener.recv()).await;
                }
                None => tokio::time::sleep(config.poll_interval).await,
            }
        };
        tokio::select! {
            () = cancel.cancelled() => break,
            () = wake => {}
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
    running.shutdown().await;
    Ok(())
}

/// A worker's hold on one saga: its claim (with the fencing token every step checks) and when
/// it was last renewed.
pub struct Lease {
    pool: PgPool,
    claimed: Claimed,
    duration: Duration,
    renewed_at: Instant,
}

impl Lease {
    /// The lease `claimed` holds for `duration` from `claimed_at` (taken before the claim, so
    /// it ends no later than the row says).
    pub fn new(pool: PgPool, claimed: Claimed, duration: Duration, claimed_at: Instant) -> Self {
        Self {
            pool,
            claimed,
            duration,
            renewed_at: claimed_at,
        }
    }

    pub fn claimed(&self) -> Claimed {
        self.claimed
    }

    /// Renews the lease when due: false once another worker claimed the saga. Renewed between
    /// steps only after a second (or a quarter of a short lease): a saga's steps take
    /// milliseconds, and a renewal is a commit. What is left of the lease then still covers a
    /// step that waits out the payment timeout.
    pub async fn keep(&mut self) -> anyhow::Result<bool> {
        let every = (self.duration / 4).min(RENEW_AFTER);
        if Instant::now() < self.renewed_at + every {
            return Ok(true);
        }
        let asked_at = Instant::now();
        let kept = deadlines::renew(&self.pool, self.claimed, self.duration).await?;
        self.renewed_at = asked_at;
        Ok(kept)
    }
}

async fn drive_one(
    driver: Arc<SagaDriver>,
    config: WorkerConfig,
    claim: Claimed,
    claimed_at: Instant,
) {
    let mut lease = Lease::new(driver.pool.clone(), claim, config.lease, claimed_at);
    let outcome = match driver.drive(&mut lease).await {
        Ok(Run::Settled { next_due }) => deadlines::finish(&driver.pool, claim, next_due).await,
        Ok(Run::Finished) => Ok(()),
        // The saga's new owner has it: nothing of ours to clean up.
        Ok(Run::LeaseLost) => Ok(()),
        Err(error) => {
            tracing::warn!(saga = %claim.saga_id, error = format!("{error:#}"), "saga step failed; retrying later");
            let retry_at = chrono::Utc::now()
                + chrono::Duration::from_std(config.retry_after).unwrap_or_default();
            deadlines::release(&driver.pool, claim, Some(retry_at)).await
        }
    };
    if let Err(error) = outcome {
        tracing::warn!(saga = %claim.saga_id, error = format!("{error:#}"), "could not update the saga's deadline");
    }
}

//! How far projections are: read-your-writes waits and the operators' view.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use tokio::time::Instant;

/// First pause between two look-ups of a position's transaction; it doubles up to [`MAX_POLL`].
/// The horizons are looked up every [`FIRST_POLL`] while anyone waits.
const FIRST_POLL: Duration = Duration::from_millis(5);
const MAX_POLL: Duration = Duration::from_millis(20);

/// Waits until every projection in `projections` has applied the event at global `position`
/// and everything that committed before it (see [`crate::runtime`], "The watermark"): `true`
/// when they have, `false` when `timeout` ran out first. `position <= 0` needs nothing.
///
/// The query API waits for a request's `X-Min-Position` through its one shared [`Horizons`];
/// this is the same wait with a watch of its own, for callers that wait now and then. A
/// position no committed event has (yet) keeps it waiting until the timeout.
pub async fn wait_for_position(
    pool: &PgPool,
    projections: &[&str],
    position: i64,
    timeout: Duration,
) -> anyhow::Result<bool> {
    // A one-off watch: the same look-ups as the query API's shared one.
    Horizons::new(pool.clone())
        .wait_for(projections, position, timeout)
        .await
}

/// The version of aggregate `aggregate_type`/`aggregate_id` that projection `projection` has
/// applied (its last sequence, as `projection_sequences` records it in the transaction that
/// applies it; 0 when it has applied none): the version a command's `If-Match` compares. Read it
/// before the read model's rows, so that it is never newer than what they show (a concurrent
/// batch can only make the version look older, and a write with it get 412, never a lost update).
pub async fn applied_version(
    pool: &PgPool,
    projection: &str,
    aggregate_type: &str,
    aggregate_id: &str,
) -> anyhow::Result<i64> {
    let version: Option<i64> = sqlx::query_scalar(
        "SELECT last_sequence FROM projection_sequences \
         WHERE projection = $1 AND aggregate_type = $2 AND aggregate_id = $3",
    )
    .bind(projection)
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_optional(pool)
    .await
    .context("reading the version a projection applied")?;
    Ok(version.unwrap_or(0))
}

/// One row of `projection_positions`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ProjectionPosition {
    pub name: String,
    /// The highest global position applied (progress, not a watermark).
    pub position: i64,
    /// Every followed event with a transaction id below it is applied (xid8, as a number).
    pub horizon: i64,
    pub last_applied_at: Option<DateTime<Utc>>,
    /// When the last applied event was recorded.
    pub last_event_at: Option<DateTime<Utc>>,
    /// How old the last applied event was when applied; 0 once caught up.
    pub lag_seconds: f64,
    /// Messages not yet delivered or acked, at the last look.
    pub pending: i64,
    /// `starting`, `running`, `failing` or `stopped`.
    pub state: String,
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// One partition's watermark (`projection_partitions`), for a projection run as partitions.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PartitionPosition {
    pub projection: String,
    /// How many partitions the projection runs as.
    pub partitions: i32,
    /// This one, from 0.
    pub partition: i32,
    /// Every event of this partition with a transaction id below it is applied.
    pub horizon: i64,
    /// Messages its consumer had not delivered or not seen acked, at the last look.
    pub pending: i64,
    pub updated_at: DateTime<Utc>,
}

/// Every partition's watermark, by projection and partition.
pub async fn partitions(executor: impl PgExecutor<'_>) -> anyhow::Result<Vec<PartitionPosition>> {
    sqlx::query_as(
        "SELECT projection, partitions, partition, horizon::text::bigint AS horizon, pending, \
                updated_at \
         FROM projection_partitions ORDER BY projection, partitions, partition",
    )
    .fetch_all(executor)
    .await
    .context("listing partition positions")
}

/// Every projection's progress, by name.
pub async fn list(executor: impl PgExecutor<'_>) -> anyhow::Result<Vec<ProjectionPosition>> {
    sqlx::query_as(
        "SELECT name, position, horizon::text::bigint AS horizon, last_applied_at, last_event_at, \
                lag_seconds, pending, state, last_error, updated_at \
         FROM projection_positions ORDER BY name",
    )
    .fetch_all(executor)
    .await
    .context("listing projection positions")
}

/// The projections' horizons, watched by one task per process for every request that waits
/// on them: a read with `X-Min-Position` costs one lookup of its position's transaction, then
/// waits on this watch, instead of polling the database itself (at a hundred waiting reads,
/// that was a hundred queries every 20 ms). The task looks only while someone waits.
#[derive(Clone)]
pub struct Horizons {
    inner: std::sync::Arc<HorizonsInner>,
}

struct HorizonsInner {
    pool: PgPool,
    /// Each projection's horizon (a transaction id), as last looked up.
    latest: tokio::sync::watch::Sender<std::collections::HashMap<String, i64>>,
    /// Requests waiting now; the task sleeps while there are none.
    waiting: std::sync::atomic::AtomicUsize,
    someone_waits: tokio::sync::Notify,
    started: std::sync::Once,
}

/// A request counted among the waiting until dropped.
struct Waiting<'a>(&'a HorizonsInner);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0
            .waiting
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Horizons {
    pub fn new(pool: PgPool) -> Self {
        Self {
            inner: std::sync::Arc::new(HorizonsInner {
                pool,
                latest: tokio::sync::watch::Sender::new(Default::default()),
                waiting: Default::default(),
                someone_waits: tokio::sync::Notify::new(),
                started: std::sync::Once::new(),
            }),
        }
    }

    /// [`wait_for_position`], sharing one look-up of the horizons between every waiting request.
    pub async fn wait_for(
        &self,
        projections: &[&str],
        position: i64,
        timeout: Duration,
    ) -> anyhow::Result<bool> {
        if position <= 0 || projections.is_empty() {
            return Ok(true);
        }
        let deadline = Instant::now() + timeout;
        let inner = &self.inner;
        inner
            .waiting
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _waiting = Waiting(inner);
        self.start();
        inner.someone_waits.notify_one();
        let mut pause = FIRST_POLL;
        // The transaction that wrote `position`: a position no committed event has (yet) keeps
        // the request waiting until the timeout.
        let tx_id = loop {
            let tx_id: Option<i64> =
                sqlx::query_scalar("SELECT tx_id::text::bigint FROM events WHERE position = $1")
                    .bind(position)
                    .fetch_optional(&inner.pool)
                    .await
                    .context("looking up a position's transaction")?;
            if let Some(tx_id) = tx_id {
                break tx_id;
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_POLL);
        };
        let mut latest = inner.latest.subscribe();
        loop {
            let passed = {
                let horizons = latest.borrow_and_update();
                projections
                    .iter()
                    .all(|name| horizons.get(*name).is_some_and(|h| *h > tx_id))
            };
            if passed {
                return Ok(true);
            }
            match tokio::time::timeout_at(deadline, latest.changed()).await {
                Ok(Ok(())) => {}
                // The deadline, or the watching task gone (never, while `self` lives).
                _ => return Ok(false),
            }
        }
    }

    /// Starts the task that looks the horizons up, once.
    fn start(&self) {
        let inner = self.inner.clone();
        self.inner.started.call_once(move || {
            tokio::spawn(async move { watch_horizons(inner).await });
        });
    }
}

/// Looks the horizons up every few milliseconds while requests wait, and publishes them when
/// they moved. Ends when every [`Horizons`] handle is gone.
async fn watch_horizons(inner: std::sync::Arc<HorizonsInner>) {
    loop {
        if std::sync::Arc::strong_count(&inner) == 1 {
            return;
        }
        if inner.waiting.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            // Woken by the next waiting request; looked at again now and then so that the task
            // notices when it is the last one holding the state.
            let _ =
                tokio::time::timeout(Duration::from_secs(1), inner.someone_waits.notified()).await;
            continue;
        }
        let horizons: Result<Vec<(String, i64)>, sqlx::Error> =
            sqlx::query_as("SELECT name, horizon::text::bigint FROM projection_positions")
                .fetch_all(&inner.pool)
                .await;
        match horizons {
            Ok(rows) => {
                let horizons: std::collections::HashMap<String, i64> = rows.into_iter().collect();
                inner.latest.send_if_modified(|current| {
                    let moved = *current != horizons;
                    if moved {
                        *current = horizons;
                    }
                    moved
                });
            }
            Err(error) => {
                tracing::debug!(%error, "looking up the projections' horizons failed; trying again")
            }
        }
        tokio::time::sleep(FIRST_POLL).await;
    }
}

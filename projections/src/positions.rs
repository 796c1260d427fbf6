//! How far projections are: read-your-writes waits and the operators' view.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use tokio::time::Instant;

/// First pause between two looks; it doubles up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(5);
const MAX_POLL: Duration = Duration::from_millis(20);

/// Waits until every projection in `projections` has applied the event at global `position`
/// and everything that committed before it (see [`crate::runtime`], "The watermark"): `true`
/// when they have, `false` when `timeout` ran out first. `position <= 0` needs nothing.
///
/// The query API calls it with a request's `X-Min-Position`. It polls (a few milliseconds
/// apart at first, then every 20 ms) with one indexed query per look; a position no committed
/// event has (yet) keeps it waiting until the timeout.
pub async fn wait_for_position(
    pool: &PgPool,
    projections: &[&str],
    position: i64,
    timeout: Duration,
) -> anyhow::Result<bool> {
    if position <= 0 || projections.is_empty() {
        return Ok(true);
    }
    let mut names: Vec<&str> = projections.to_vec();
    names.sort_unstable();
    names.dedup();
    let wanted = i64::try_from(names.len()).unwrap_or(i64::MAX);
    let deadline = Instant::now() + timeout;
    let mut pause = FIRST_POLL;
    loop {
        let caught_up: Option<i64> = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM projection_positions p \
                     WHERE p.name = ANY($1) AND p.horizon > e.tx_id) \
             FROM events e WHERE e.position = $2",
        )
        .bind(&names)
        .bind(position)
        .fetch_optional(pool)
        .await
        .context("comparing projection horizons with a position")?;
        if caught_up == Some(wanted) {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(MAX_POLL);
    }
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

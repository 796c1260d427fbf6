//! The `projection_rebuilds` rows: what operators start, watch and cancel.

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::{Projection, SharedProjection};

/// Where a rebuild is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum RebuildState {
    /// Accepted; no process has taken it up yet.
    Pending,
    /// Applying the events that had committed when it began into the shadow tables.
    Bulk,
    /// Applying the events committed since, until it is close behind the live horizon.
    CatchingUp,
    /// Applying the last events and swapping the shadow tables in, in one transaction.
    Swapping,
    Completed,
    Failed,
    Cancelled,
}

impl RebuildState {
    /// Whether it has ended (and will never change again).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// A rebuild's progress, as operators see it (`GET /v1/admin/rebuilds/{rebuild_id}`).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct RebuildProgress {
    pub rebuild_id: Uuid,
    pub projection: String,
    pub state: RebuildState,
    pub events_done: i64,
    /// Events to apply, as far as known: it grows while commands keep arriving.
    pub events_total: i64,
    /// Over the current run (since the rebuild began or was last resumed).
    pub events_per_second: f64,
    /// `None` until a rate is known, and once the rebuild has ended.
    pub eta_seconds: Option<f64>,
    /// Events that kept failing and were parked as dead letters of the rebuilt projection.
    pub events_parked: i64,
    /// How many times a process took over from a checkpoint.
    pub resumes: i32,
    pub cancel_requested: bool,
    pub error: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Why a rebuild could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no projection is named `{0}`")]
    UnknownProjection(String),
    #[error("projection `{0}` drives sagas and owns no tables: it cannot be rebuilt")]
    NotRebuildable(String),
    #[error("projection `{projection}` is already being rebuilt by {rebuild_id}")]
    AlreadyRunning {
        projection: String,
        rebuild_id: Uuid,
    },
    #[error(transparent)]
    Database(#[from] anyhow::Error),
}

/// Why a rebuild could not be cancelled.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("no rebuild {0}")]
    NotFound(Uuid),
    #[error("rebuild {0} has already ended")]
    Ended(Uuid),
    #[error(transparent)]
    Database(#[from] anyhow::Error),
}

const COLUMNS: &str = "rebuild_id, projection, state, events_done, events_total, \
     events_per_second, \
     CASE WHEN state IN ('completed', 'failed', 'cancelled') OR events_per_second <= 0 THEN NULL \
          ELSE GREATEST(events_total - events_done, 0) / events_per_second END AS eta_seconds, \
     events_parked, resumes, cancel_requested, error, requested_at, updated_at, finished_at";

/// The projection of `projections` named `name`, if it can be rebuilt.
pub fn rebuildable<'p>(
    projections: &'p [SharedProjection],
    name: &str,
) -> Result<&'p SharedProjection, StartError> {
    let projection = projections
        .iter()
        .find(|p| p.name() == name)
        .ok_or_else(|| StartError::UnknownProjection(name.to_owned()))?;
    if projection.tables().is_empty() {
        return Err(StartError::NotRebuildable(name.to_owned()));
    }
    Ok(projection)
}

/// Asks for a rebuild of the projection named `name`; a running engine's rebuild runner takes it
/// up (see [`crate::rebuild::run_rebuilds`]).
pub async fn start(
    pool: &PgPool,
    projections: &[SharedProjection],
    name: &str,
) -> Result<RebuildProgress, StartError> {
    let projection = rebuildable(projections, name)?;
    let types: Vec<String> = projection
        .aggregate_types()
        .iter()
        .map(|t| t.to_string())
        .collect();
    // A first estimate; the runner refines it when it fixes the bulk horizon.
    let total: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE cardinality($1::text[]) = 0 OR aggregate_type = ANY($1)",
    )
    .bind(&types)
    .fetch_one(pool)
    .await
    .context("counting the events to rebuild from")?;
    let inserted: Option<RebuildProgress> = sqlx::query_as(&format!(
        "INSERT INTO projection_rebuilds (rebuild_id, projection, events_total) VALUES ($1, $2, $3) \
         ON CONFLICT (projection) WHERE state IN ('pending', 'bulk', 'catching_up', 'swapping') \
         DO NOTHING RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(name)
    .bind(total)
    .fetch_optional(pool)
    .await
    .context("recording a rebuild")?;
    if let Some(progress) = inserted {
        return Ok(progress);
    }
    let running: Option<Uuid> = sqlx::query_scalar(
        "SELECT rebuild_id FROM projection_rebuilds \
         WHERE projection = $1 AND state IN ('pending', 'bulk', 'catching_up', 'swapping')",
    )
    .bind(name)
    .fetch_optional(pool)
    .await
    .context("finding the running rebuild")?;
    match running {
        Some(rebuild_id) => Err(StartError::AlreadyRunning {
            projection: name.to_owned(),
            rebuild_id,
        }),
        // It ended in between: ask again.
        None => Box::pin(start(pool, projections, name)).await,
    }
}

/// One rebuild's progress.
pub async fn progress(
    executor: impl PgExecutor<'_>,
    rebuild_id: Uuid,
) -> anyhow::Result<Option<RebuildProgress>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM projection_rebuilds WHERE rebuild_id = $1"
    ))
    .bind(rebuild_id)
    .fetch_optional(executor)
    .await
    .context("reading a rebuild's progress")
}

/// Rebuilds, newest first, after the one `after` names (keyset pagination).
pub async fn list(
    executor: impl PgExecutor<'_>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> anyhow::Result<Vec<RebuildProgress>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM projection_rebuilds \
         WHERE $1::timestamptz IS NULL OR (requested_at, rebuild_id) < ($1, $2) \
         ORDER BY requested_at DESC, rebuild_id DESC LIMIT $3"
    ))
    .bind(after.map(|(at, _)| at))
    .bind(after.map(|(_, id)| id))
    .bind(limit)
    .fetch_all(executor)
    .await
    .context("listing rebuilds")
}

/// Asks a rebuild to stop: a pending one is cancelled at once, a running one at its next batch
/// (its shadow tables are dropped; the live read model never changed).
pub async fn cancel(pool: &PgPool, rebuild_id: Uuid) -> Result<RebuildProgress, CancelError> {
    let updated: Option<RebuildProgress> = sqlx::query_as(&format!(
        "UPDATE projection_rebuilds SET cancel_requested = true, updated_at = now(), \
             state = CASE WHEN state = 'pending' THEN 'cancelled' ELSE state END, \
             finished_at = CASE WHEN state = 'pending' THEN now() ELSE finished_at END \
         WHERE rebuild_id = $1 AND state NOT IN ('completed', 'failed', 'cancelled') \
         RETURNING {COLUMNS}"
    ))
    .bind(rebuild_id)
    .fetch_optional(pool)
    .await
    .context("cancelling a rebuild")?;
    if let Some(progress) = updated {
        return Ok(progress);
    }
    match progress(pool, rebuild_id).await? {
        Some(_) => Err(CancelError::Ended(rebuild_id)),
        None => Err(CancelError::NotFound(rebuild_id)),
    }
}

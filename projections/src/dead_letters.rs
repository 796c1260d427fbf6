//! Events a projection gave up on: parked with their error, listed and retried by an operator.
//!
//! A parked event's sequence counts as applied, so its projection moved on; a retry applies the
//! event again (after the events that followed it, which the operator should keep in mind) and,
//! when it succeeds, stamps `retried_at`.

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{Connection, PgConnection, PgExecutor, PgPool};

use crate::runtime::ErasedProjection;
use crate::{Projection, StoredEvent};

/// One row of `dead_letters`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DeadLetter {
    pub id: i64,
    pub projection: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub position: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
    /// The last failure, with its causes.
    pub error: String,
    pub attempts: i32,
    pub parked_at: DateTime<Utc>,
    /// When a retry applied it; `None` while it is still parked.
    pub retried_at: Option<DateTime<Utc>>,
}

impl DeadLetter {
    /// The event that was parked.
    pub fn event(&self) -> StoredEvent {
        StoredEvent {
            aggregate_type: self.aggregate_type.clone(),
            aggregate_id: self.aggregate_id.clone(),
            sequence: self.sequence,
            position: self.position,
            event_type: self.event_type.clone(),
            event_version: self.event_version.clone(),
            payload: self.payload.clone(),
            metadata: self.metadata.clone(),
            recorded_at: self.recorded_at,
        }
    }
}

/// What a retry did.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryOutcome {
    /// The event applied; the dead letter is stamped `retried_at`.
    Applied,
    /// It failed again; the error is recorded and the event stays parked.
    Failed(String),
    /// No parked event of this projection has that id.
    NotFound,
}

/// Parks `event` for `projection` inside the batch's transaction.
pub(crate) async fn park(
    conn: &mut PgConnection,
    projection: &str,
    event: &StoredEvent,
    error: &anyhow::Error,
    attempts: u32,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO dead_letters \
           (projection, aggregate_type, aggregate_id, sequence, position, event_type, event_version, \
            payload, metadata, recorded_at, error, attempts) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (projection, aggregate_type, aggregate_id, sequence) DO UPDATE SET \
           error = EXCLUDED.error, attempts = dead_letters.attempts + EXCLUDED.attempts, \
           parked_at = now(), retried_at = NULL",
    )
    .bind(projection)
    .bind(&event.aggregate_type)
    .bind(&event.aggregate_id)
    .bind(event.sequence)
    .bind(event.position)
    .bind(&event.event_type)
    .bind(&event.event_version)
    .bind(&event.payload)
    .bind(&event.metadata)
    .bind(event.recorded_at)
    .bind(format!("{error:#}"))
    .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
    .execute(conn)
    .await
    .context("parking an event in dead_letters")?;
    metrics::counter!("commerce_projection_dead_letters_total", "projection" => projection.to_owned())
        .increment(1);
    Ok(())
}

/// The events still parked, oldest first; of one projection, or of all.
pub async fn list_parked(
    executor: impl PgExecutor<'_>,
    projection: Option<&str>,
) -> anyhow::Result<Vec<DeadLetter>> {
    sqlx::query_as(
        "SELECT id, projection, aggregate_type, aggregate_id, sequence, position, event_type, \
                event_version, payload, metadata, recorded_at, error, attempts, parked_at, retried_at \
         FROM dead_letters \
         WHERE retried_at IS NULL AND ($1::text IS NULL OR projection = $1) \
         ORDER BY id",
    )
    .bind(projection)
    .fetch_all(executor)
    .await
    .context("listing dead letters")
}

/// Applies the parked event `id` of `projection` again, in its own transaction.
pub async fn retry(
    pool: &PgPool,
    projection: &impl Projection,
    id: i64,
) -> anyhow::Result<RetryOutcome> {
    retry_erased(pool, projection, id).await
}

async fn retry_erased(
    pool: &PgPool,
    projection: &dyn ErasedProjection,
    id: i64,
) -> anyhow::Result<RetryOutcome> {
    let mut tx = pool.begin().await.context("beginning a retry")?;
    let letter: Option<DeadLetter> = sqlx::query_as(
        "SELECT id, projection, aggregate_type, aggregate_id, sequence, position, event_type, \
                event_version, payload, metadata, recorded_at, error, attempts, parked_at, retried_at \
         FROM dead_letters WHERE id = $1 AND projection = $2 AND retried_at IS NULL FOR UPDATE",
    )
    .bind(id)
    .bind(projection.erased_name())
    .fetch_optional(&mut *tx)
    .await
    .context("loading the dead letter")?;
    let Some(letter) = letter else {
        return Ok(RetryOutcome::NotFound);
    };
    let event = letter.event();
    let mut savepoint = tx.begin().await.context("setting a savepoint")?;
    let outcome = match projection.erased_apply(&mut savepoint, &event).await {
        Ok(()) => {
            savepoint
                .commit()
                .await
                .context("releasing the savepoint")?;
            sqlx::query("UPDATE dead_letters SET retried_at = now() WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .context("stamping the dead letter")?;
            RetryOutcome::Applied
        }
        Err(error) => {
            savepoint
                .rollback()
                .await
                .context("rolling back to the savepoint")?;
            let error = format!("{error:#}");
            sqlx::query(
                "UPDATE dead_letters SET error = $2, attempts = attempts + 1 WHERE id = $1",
            )
            .bind(id)
            .bind(&error)
            .execute(&mut *tx)
            .await
            .context("recording the failed retry")?;
            RetryOutcome::Failed(error)
        }
    };
    tx.commit().await.context("committing the retry")?;
    Ok(outcome)
}

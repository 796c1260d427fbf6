//! Events a projection gave up on: parked with their error, listed and retried by an operator.
//!
//! A parked event's sequence counts as applied, so its projection moved on; a retry applies the
//! event again (after the events that followed it, which the operator should keep in mind) and,
//! when it succeeds, stamps `retried_at`.
//!
//! A projection that drives sagas ([`Projection::saga_of`]) also records, with the dead letter,
//! the saga the event would have moved in `stuck_sagas`: nothing else would wake it. A retry
//! that applies the event removes that record.

use anyhow::Context;
use chrono::{DateTime, Utc};
use commerce_domain::upcast::UpcastError;
use serde_json::Value;
use sqlx::{Connection, PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

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
    /// The event that was parked, brought to its current version (it may have been parked by an
    /// engine that wrote an older one).
    pub fn event(&self) -> Result<StoredEvent, UpcastError> {
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
        .upcast()
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

/// An event a projection gives up on.
pub(crate) struct Parked<'a> {
    pub projection: &'static str,
    pub event: &'a StoredEvent,
    pub error: &'a anyhow::Error,
    pub attempts: u32,
    /// The saga the event drives, if its projection drives sagas: it is stuck now.
    pub saga: Option<Uuid>,
}

/// Parks an event inside the batch's transaction and, when it drives a saga, records that saga
/// in `stuck_sagas` in the same statement (a saga already stuck keeps its first cause).
pub(crate) async fn park(conn: &mut PgConnection, parked: &Parked<'_>) -> anyhow::Result<()> {
    let event = parked.event;
    sqlx::query(
        "WITH letter AS ( \
           INSERT INTO dead_letters \
             (projection, aggregate_type, aggregate_id, sequence, position, event_type, event_version, \
              payload, metadata, recorded_at, error, attempts) \
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
           ON CONFLICT (projection, aggregate_type, aggregate_id, sequence) DO UPDATE SET \
             error = EXCLUDED.error, attempts = dead_letters.attempts + EXCLUDED.attempts, \
             parked_at = now(), retried_at = NULL \
           RETURNING id, error) \
         INSERT INTO stuck_sagas (saga_id, projection, dead_letter_id, reason) \
         SELECT $13, $1, id, error FROM letter WHERE $13::uuid IS NOT NULL \
         ON CONFLICT (saga_id) DO NOTHING",
    )
    .bind(parked.projection)
    .bind(&event.aggregate_type)
    .bind(&event.aggregate_id)
    .bind(event.sequence)
    .bind(event.position)
    .bind(&event.event_type)
    .bind(&event.event_version)
    .bind(&event.payload)
    .bind(&event.metadata)
    .bind(event.recorded_at)
    .bind(format!("{:#}", parked.error))
    .bind(i32::try_from(parked.attempts).unwrap_or(i32::MAX))
    .bind(parked.saga)
    .execute(conn)
    .await
    .context("parking an event in dead_letters")?;
    metrics::counter!("commerce_projection_dead_letters_total", "projection" => parked.projection)
        .increment(1);
    Ok(())
}

/// Sets the `commerce_dead_letters` gauge of `projection` to the number of its events still
/// parked. Workers call it at start and after a batch that parked; a retry calls it too.
pub async fn refresh_gauge(
    executor: impl PgExecutor<'_>,
    projection: &'static str,
) -> anyhow::Result<()> {
    let parked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM dead_letters WHERE projection = $1 AND retried_at IS NULL",
    )
    .bind(projection)
    .fetch_one(executor)
    .await
    .context("counting dead letters")?;
    metrics::gauge!("commerce_dead_letters", "projection" => projection).set(parked as f64);
    Ok(())
}

/// One row of `stuck_sagas`: a saga a parked event of a saga-driving projection left stuck.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StuckSaga {
    pub saga_id: Uuid,
    pub projection: String,
    pub dead_letter_id: i64,
    /// The parked event's error.
    pub reason: String,
    pub stuck_at: DateTime<Utc>,
}

/// Every stuck saga, oldest first.
pub async fn list_stuck_sagas(executor: impl PgExecutor<'_>) -> anyhow::Result<Vec<StuckSaga>> {
    sqlx::query_as(
        "SELECT saga_id, projection, dead_letter_id, reason, stuck_at FROM stuck_sagas \
         ORDER BY stuck_at, saga_id",
    )
    .fetch_all(executor)
    .await
    .context("listing stuck sagas")
}

/// The stuck record of one saga, if a parked event left it stuck.
pub async fn stuck_saga(
    executor: impl PgExecutor<'_>,
    saga_id: Uuid,
) -> anyhow::Result<Option<StuckSaga>> {
    sqlx::query_as(
        "SELECT saga_id, projection, dead_letter_id, reason, stuck_at FROM stuck_sagas \
         WHERE saga_id = $1",
    )
    .bind(saga_id)
    .fetch_optional(executor)
    .await
    .context("reading a stuck saga")
}

/// Forgets that a saga is stuck: an operator woke it another way. Its dead letter, if still
/// parked, stays listed.
pub async fn clear_stuck_saga(executor: impl PgExecutor<'_>, saga_id: Uuid) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM stuck_sagas WHERE saga_id = $1")
        .bind(saga_id)
        .execute(executor)
        .await
        .context("clearing a stuck saga")?;
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

const COLUMNS: &str =
    "id, projection, aggregate_type, aggregate_id, sequence, position, event_type, \
     event_version, payload, metadata, recorded_at, error, attempts, parked_at, retried_at";

/// A page of dead letters, oldest first: of one projection or of all, still parked or (with
/// `include_retried`) retried too, after the one with id `after`.
pub async fn list_page(
    executor: impl PgExecutor<'_>,
    projection: Option<&str>,
    include_retried: bool,
    after: i64,
    limit: i64,
) -> anyhow::Result<Vec<DeadLetter>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM dead_letters \
         WHERE ($1::text IS NULL OR projection = $1) AND ($2 OR retried_at IS NULL) AND id > $3 \
         ORDER BY id LIMIT $4"
    ))
    .bind(projection)
    .bind(include_retried)
    .bind(after)
    .bind(limit)
    .fetch_all(executor)
    .await
    .context("listing dead letters")
}

/// The dead letter `id`, parked or retried.
pub async fn get(executor: impl PgExecutor<'_>, id: i64) -> anyhow::Result<Option<DeadLetter>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM dead_letters WHERE id = $1"))
        .bind(id)
        .fetch_optional(executor)
        .await
        .context("reading a dead letter")
}

/// How many events each projection has still parked (projections with none are absent).
pub async fn parked_counts(
    executor: impl PgExecutor<'_>,
) -> anyhow::Result<std::collections::HashMap<String, i64>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT projection, count(*) FROM dead_letters WHERE retried_at IS NULL GROUP BY projection",
    )
    .fetch_all(executor)
    .await
    .context("counting dead letters")?;
    Ok(rows.into_iter().collect())
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
    let mut savepoint = tx.begin().await.context("setting a savepoint")?;
    let applied = match letter.event() {
        Ok(event) => projection.erased_apply(&mut savepoint, &event).await,
        Err(error) => Err(error.into()),
    };
    let outcome = match applied {
        Ok(()) => {
            savepoint
                .commit()
                .await
                .context("releasing the savepoint")?;
            // The saga it left stuck (if it drives one) is unstuck with it.
            sqlx::query(
                "WITH stamped AS (UPDATE dead_letters SET retried_at = now() WHERE id = $1) \
                 DELETE FROM stuck_sagas WHERE dead_letter_id = $1",
            )
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
    if let Err(error) = refresh_gauge(pool, projection.erased_name()).await {
        tracing::warn!(
            error = format!("{error:#}"),
            "could not refresh the dead-letter gauge"
        );
    }
    Ok(outcome)
}

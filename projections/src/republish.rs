//! Republishing: an operator publishes the event store to JetStream again from a position, for
//! a stream that lost messages (JetStream is derived data: see DESIGN.md) or a consumer that
//! must see them again.
//!
//! It reads and publishes exactly as the relay does ([`crate::relay`]'s batch): in commit order
//! `(tx_id, position)`, only events of transactions below the commit horizon fixed when it
//! began (later ones are the relay's), every message built by [`crate::StoredEvent::to_message`]
//! with the same `Nats-Msg-Id`. JetStream drops what is still in its duplicate window;
//! projections skip the rest by their per-aggregate sequences. So a republish never changes a
//! read model that was up to date. An event too large for the bus is skipped (the relay has
//! parked it in `relay_parked_events`).
//!
//! Each republish is a row of `republishes` with its progress, stored after every batch; the
//! work runs as a task of the process that started it. A process that stops first marks it
//! failed on its way out (while it still reaches Postgres); an operator starts another: what
//! was published is harmless to publish again.

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::relay::batch;
use crate::Namespace;

/// Events read and published per batch, as the relay does.
const BATCH: i64 = 500;

/// Where a republish is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum RepublishState {
    Running,
    Completed,
    Failed,
}

/// A republish's progress, as operators see it (`GET /v1/admin/republishes/{republish_id}`).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct RepublishProgress {
    pub republish_id: Uuid,
    pub from_position: i64,
    pub state: RepublishState,
    pub events_done: i64,
    pub events_total: i64,
    pub events_per_second: f64,
    /// `None` until a rate is known, and once it has ended.
    pub eta_seconds: Option<f64>,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "republish_id, from_position, state, events_done, events_total, \
     COALESCE(events_done / NULLIF(EXTRACT(EPOCH FROM COALESCE(finished_at, updated_at) - started_at)::float8, 0), 0) \
         AS events_per_second, \
     CASE WHEN state <> 'running' OR events_done = 0 THEN NULL \
          ELSE GREATEST(events_total - events_done, 0) \
               * EXTRACT(EPOCH FROM updated_at - started_at)::float8 / events_done END AS eta_seconds, \
     error, started_at, finished_at";

/// Records a republish of every event at or after `from_position` (at least 1) and starts
/// publishing them on a task of this process, which stops (marking it failed) when `shutdown`
/// is cancelled. A missing stream is created with `stream_replicas`, as the relay would.
pub async fn start(
    pool: &PgPool,
    jetstream: &jetstream::Context,
    namespace: &Namespace,
    stream_replicas: usize,
    from_position: i64,
    shutdown: CancellationToken,
) -> anyhow::Result<RepublishProgress> {
    anyhow::ensure!(
        from_position >= 1,
        "a republish starts at position 1 or later"
    );
    crate::stream::ensure(jetstream, namespace, stream_replicas).await?;
    let horizon = batch::horizon(pool).await?;
    // The first transaction holding an event at or after the position: the commit-order scan
    // starts there rather than at the beginning of the store.
    let (total, first_tx): (i64, Option<i64>) = sqlx::query_as(
        "SELECT count(*), min(tx_id::text::bigint) FROM events \
         WHERE position >= $1 AND tx_id < $2::text::xid8",
    )
    .bind(from_position)
    .bind(horizon)
    .fetch_one(pool)
    .await
    .context("counting the events to republish")?;
    let progress: RepublishProgress = sqlx::query_as(&format!(
        "INSERT INTO republishes (republish_id, namespace, from_position, horizon, cursor_tx, events_total) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(namespace.as_str())
    .bind(from_position)
    .bind(horizon)
    .bind(first_tx.unwrap_or_default())
    .bind(total)
    .fetch_one(pool)
    .await
    .context("recording a republish")?;
    let job = Job {
        pool: pool.clone(),
        jetstream: jetstream.clone(),
        namespace: namespace.clone(),
        id: progress.republish_id,
        from_position,
        horizon,
        cursor: (first_tx.unwrap_or_default(), 0),
    };
    tokio::spawn(job.run(shutdown));
    Ok(progress)
}

/// One republish's progress; `None` if no republish of this namespace has that id.
pub async fn progress(
    executor: impl PgExecutor<'_>,
    namespace: &Namespace,
    republish_id: Uuid,
) -> anyhow::Result<Option<RepublishProgress>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM republishes WHERE republish_id = $1 AND namespace = $2"
    ))
    .bind(republish_id)
    .bind(namespace.as_str())
    .fetch_optional(executor)
    .await
    .context("reading a republish's progress")
}

/// A republish at work.
struct Job {
    pool: PgPool,
    jetstream: jetstream::Context,
    namespace: Namespace,
    id: Uuid,
    from_position: i64,
    horizon: i64,
    /// The last event published, in commit order.
    cursor: (i64, i64),
}

impl Job {
    #[tracing::instrument(skip_all, fields(republish_id = %self.id, from_position = self.from_position))]
    async fn run(mut self, shutdown: CancellationToken) {
        let outcome = tokio::select! {
            () = shutdown.cancelled() => Err(anyhow::anyhow!("the engine stopped before the republish completed")),
            outcome = self.publish_all() => outcome,
        };
        let error = match outcome {
            Ok(()) => {
                tracing::info!("republish completed");
                None
            }
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "republish failed");
                Some(format!("{error:#}"))
            }
        };
        // Recording the end is retried a few times: a row left `running` would mislead.
        for attempt in 1..=3 {
            match self.finish(error.as_deref()).await {
                Ok(()) => return,
                Err(failure) if attempt < 3 => {
                    tracing::warn!(
                        error = format!("{failure:#}"),
                        "could not record the republish's end; retrying"
                    );
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(failure) => {
                    tracing::error!(
                        error = format!("{failure:#}"),
                        "could not record the republish's end"
                    )
                }
            }
        }
    }

    async fn publish_all(&mut self) -> anyhow::Result<()> {
        loop {
            let rows = batch::read_committed(
                &self.pool,
                self.horizon,
                self.cursor,
                self.from_position,
                BATCH,
            )
            .await?;
            let Some(last) = rows.last() else {
                return Ok(());
            };
            self.cursor = (last.tx_id, last.event.position);
            let sent = batch::publish(&self.jetstream, &self.namespace, &rows).await?;
            for (event, reason) in &sent.too_large {
                tracing::warn!(
                    aggregate_type = %event.aggregate_type,
                    sequence = event.sequence,
                    position = event.position,
                    reason,
                    "skipping an event too large for the bus"
                );
            }
            sqlx::query(
                "UPDATE republishes SET cursor_tx = $2, cursor_position = $3, \
                     events_done = events_done + $4, updated_at = now() WHERE republish_id = $1",
            )
            .bind(self.id)
            .bind(self.cursor.0)
            .bind(self.cursor.1)
            .bind(i64::try_from(rows.len()).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await
            .context("storing the republish's progress")?;
            if rows.len() < usize::try_from(BATCH).unwrap_or(usize::MAX) {
                return Ok(());
            }
        }
    }

    async fn finish(&self, error: Option<&str>) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE republishes SET state = CASE WHEN $2::text IS NULL THEN 'completed' ELSE 'failed' END, \
                 error = $2, updated_at = now(), finished_at = now() WHERE republish_id = $1",
        )
        .bind(self.id)
        .bind(error)
        .execute(&self.pool)
        .await
        .context("recording the republish's end")?;
        Ok(())
    }
}

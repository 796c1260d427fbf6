//! Applying events read straight from the event store, without JetStream: for rebuilds and
//! catch-ups.

use anyhow::Context;
use sqlx::PgPool;

use crate::runtime::{apply_batch, ErasedProjection, ProjectionConfig};
use crate::{Projection, StoredEvent};

/// Events read and applied per transaction.
const BATCH: i64 = 2000;

/// What [`apply_from_store`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplayReport {
    /// Events applied (including gaps healed along the way).
    pub applied: u64,
    /// Events the projection had already applied.
    pub duplicates: u64,
    /// Events that kept failing and were parked.
    pub parked: u64,
    /// The highest position applied or parked.
    pub last_position: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct Row {
    tx_id: i64,
    #[sqlx(flatten)]
    event: StoredEvent,
}

/// Applies to `projection` every event of the types it follows with a position above
/// `from_position`, read from the event store in commit order `(tx_id, position)`, in
/// transactions of 2,000 with the same bookkeeping as the live worker (so events it already has
/// are skipped, failures parked, and running both at once is safe).
///
/// It applies what each of its queries sees committed; an event committed meanwhile behind its
/// cursor reaches the projection through the stream (or is healed with its aggregate's next
/// event).
pub async fn apply_from_store(
    pool: &PgPool,
    projection: &impl Projection,
    from_position: i64,
) -> anyhow::Result<ReplayReport> {
    apply_erased(pool, projection, from_position).await
}

async fn apply_erased(
    pool: &PgPool,
    projection: &dyn ErasedProjection,
    from_position: i64,
) -> anyhow::Result<ReplayReport> {
    let max_attempts = ProjectionConfig::default().max_attempts;
    let types = projection.erased_aggregate_types();
    let types: Option<Vec<String>> =
        (!types.is_empty()).then(|| types.iter().map(|t| t.to_string()).collect());
    // The next batch is read while this one is applied: Postgres and this process take turns
    // otherwise, each idle half the time.
    let (batches, mut ready) = tokio::sync::mpsc::channel(1);
    let reader = tokio::spawn(read_batches(pool.clone(), types, from_position, batches));
    let mut report = ReplayReport::default();
    while let Some(events) = ready.recv().await {
        let batch = apply_batch(pool, projection, &events, max_attempts).await?;
        report.applied += batch.applied;
        report.duplicates += batch.duplicates;
        report.parked += batch.parked;
        report.last_position = report.last_position.max(batch.max_position);
    }
    reader.await.context("the replay's reader panicked")??;
    Ok(report)
}

/// Sends the events to replay, in batches of [`BATCH`], until the store has no more or the
/// receiver is gone.
async fn read_batches(
    pool: PgPool,
    types: Option<Vec<String>>,
    from_position: i64,
    batches: tokio::sync::mpsc::Sender<Vec<StoredEvent>>,
) -> anyhow::Result<()> {
    let mut after = (0_i64, 0_i64);
    loop {
        // ORDER BY names the columns qualified: bare, it would sort by the bigint alias and miss
        // the (tx_id, position) index, scanning and sorting the whole tail of the store per batch.
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT tx_id::text::bigint AS tx_id, aggregate_type, aggregate_id, sequence, position, \
                    event_type, event_version, payload, metadata, recorded_at \
             FROM events \
             WHERE (tx_id, position) > ($1::text::xid8, $2) \
               AND position > $3 AND ($4::text[] IS NULL OR aggregate_type = ANY($4)) \
             ORDER BY events.tx_id, events.position \
             LIMIT $5",
        )
        .bind(after.0)
        .bind(after.1)
        .bind(from_position)
        .bind(&types)
        .bind(BATCH)
        .fetch_all(&pool)
        .await
        .context("reading events to replay")?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = (last.tx_id, last.event.position);
        let full = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= BATCH;
        let events = rows.into_iter().map(|row| row.event).collect();
        if batches.send(events).await.is_err() || !full {
            return Ok(());
        }
    }
}

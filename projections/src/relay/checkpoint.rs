//! The relay's checkpoint: how far the event store has been published, in commit order.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};

use crate::Namespace;

/// The channel the relay notifies (with the namespace as payload) after storing a checkpoint.
pub const CHECKPOINT_CHANNEL: &str = "relay_checkpoint";

/// One row of `relay_checkpoint`. Transaction ids are xid8 values carried as `i64`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last event published, in `(tx_id, position)` order.
    pub tx_id: i64,
    pub position: i64,
    /// Every event with `tx_id < horizon` has been published and acknowledged.
    pub horizon: i64,
    /// The stream sequence of the last acknowledged message: every event published so far sits
    /// at or below it in the stream.
    pub stream_sequence: u64,
    /// The highest global position published.
    pub published_position: i64,
    /// The identity ([`crate::stream::identity`]) of the stream `stream_sequence` and the
    /// horizon speak of; `None` before the relay first checked it.
    pub stream_created: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct Row {
    tx_id: i64,
    position: i64,
    horizon: i64,
    stream_sequence: i64,
    published_position: i64,
    stream_created: Option<DateTime<Utc>>,
}

impl From<Row> for Checkpoint {
    fn from(row: Row) -> Self {
        Self {
            tx_id: row.tx_id,
            position: row.position,
            horizon: row.horizon,
            stream_sequence: u64::try_from(row.stream_sequence).unwrap_or_default(),
            published_position: row.published_position,
            stream_created: row.stream_created,
        }
    }
}

/// The namespace's checkpoint; all zeros when the relay has published nothing yet.
pub async fn load(
    executor: impl PgExecutor<'_>,
    namespace: &Namespace,
) -> anyhow::Result<Checkpoint> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT tx_id::text::bigint AS tx_id, position, horizon::text::bigint AS horizon, \
                stream_sequence, published_position, stream_created \
         FROM relay_checkpoint WHERE namespace = $1",
    )
    .bind(namespace.as_str())
    .fetch_optional(executor)
    .await
    .context("loading the relay checkpoint")?;
    Ok(row.map(Checkpoint::from).unwrap_or_default())
}

/// Stores `checkpoint` (never moving any part of it backwards within one stream) and notifies
/// [`CHECKPOINT_CHANNEL`]. The relay [`reset`]s the checkpoint before it speaks of another
/// stream; should it not have, the stream sequence of the other stream replaces the old one
/// instead of being compared with it.
pub(crate) async fn store(
    conn: &mut PgConnection,
    namespace: &Namespace,
    checkpoint: &Checkpoint,
) -> anyhow::Result<()> {
    sqlx::query(
        "WITH stored AS ( \
           INSERT INTO relay_checkpoint \
             (namespace, tx_id, position, horizon, stream_sequence, published_position, stream_created, updated_at) \
           VALUES ($1, $2::text::xid8, $3, $4::text::xid8, $5, $6, $8, now()) \
           ON CONFLICT (namespace) DO UPDATE SET \
             tx_id = GREATEST(relay_checkpoint.tx_id, EXCLUDED.tx_id), \
             position = CASE WHEN (EXCLUDED.tx_id, EXCLUDED.position) > (relay_checkpoint.tx_id, relay_checkpoint.position) \
                             THEN EXCLUDED.position ELSE relay_checkpoint.position END, \
             horizon = GREATEST(relay_checkpoint.horizon, EXCLUDED.horizon), \
             stream_sequence = CASE WHEN relay_checkpoint.stream_created IS NOT DISTINCT FROM EXCLUDED.stream_created \
                                    THEN GREATEST(relay_checkpoint.stream_sequence, EXCLUDED.stream_sequence) \
                                    ELSE EXCLUDED.stream_sequence END, \
             stream_created = EXCLUDED.stream_created, \
             published_position = GREATEST(relay_checkpoint.published_position, EXCLUDED.published_position), \
             updated_at = now() \
           RETURNING namespace) \
         SELECT pg_notify($7, namespace) FROM stored",
    )
    .bind(namespace.as_str())
    .bind(checkpoint.tx_id)
    .bind(checkpoint.position)
    .bind(checkpoint.horizon)
    .bind(i64::try_from(checkpoint.stream_sequence).context("stream sequence out of range")?)
    .bind(checkpoint.published_position)
    .bind(CHECKPOINT_CHANNEL)
    .bind(checkpoint.stream_created)
    .execute(conn)
    .await
    .context("storing the relay checkpoint")?;
    Ok(())
}

/// Forgets how far the namespace was published: the relay republishes the whole event store
/// (for a stream that was lost or recreated). JetStream drops what is still in its duplicate
/// window; projections skip what they already applied.
pub async fn reset(executor: impl PgExecutor<'_>, namespace: &Namespace) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM relay_checkpoint WHERE namespace = $1")
        .bind(namespace.as_str())
        .execute(executor)
        .await
        .context("resetting the relay checkpoint")?;
    Ok(())
}

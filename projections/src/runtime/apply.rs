//! Applying a batch of events in one transaction, with the per-aggregate bookkeeping that makes
//! redelivery, reordering and lost messages harmless.

use std::borrow::Cow;
use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection, PgPool};

use super::ErasedProjection;
use crate::failure::is_transient;
use crate::StoredEvent;

/// What applying a batch did.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct BatchReport {
    /// Events applied (healed ones included).
    pub applied: u64,
    /// Of those, events read from the store to fill a gap.
    pub healed: u64,
    /// Events at or below their aggregate's last applied sequence.
    pub duplicates: u64,
    /// Events that kept failing and were parked.
    pub parked: u64,
    /// The highest position applied or parked.
    pub max_position: Option<i64>,
    /// `recorded_at` of the last event applied or parked.
    pub last_recorded_at: Option<DateTime<Utc>>,
}

impl BatchReport {
    fn handled(&mut self, event: &StoredEvent) {
        self.max_position = Some(
            self.max_position
                .map_or(event.position, |p| p.max(event.position)),
        );
        self.last_recorded_at = Some(event.recorded_at);
    }
}

/// How failures of `apply` are handled.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// No savepoints: the first failure abandons the whole attempt.
    Optimistic,
    /// A savepoint per event, `max_attempts` tries, then park (deterministic failures only).
    Isolated { max_attempts: u32 },
}

/// Applies `events` (in the given order) in one transaction with the bookkeeping, trying the
/// cheap way first. An error means the batch did not commit: an infrastructure failure, or a
/// transient failure of the projection itself (see [`crate::failure`]), which must be retried
/// later rather than parked.
#[tracing::instrument(skip_all, fields(projection = projection.erased_name(), events = events.len()), err)]
pub(crate) async fn apply_batch(
    pool: &PgPool,
    projection: &dyn ErasedProjection,
    events: &[StoredEvent],
    max_attempts: u32,
) -> anyhow::Result<BatchReport> {
    if let Some(report) = apply_in_transaction(pool, projection, events, Mode::Optimistic).await? {
        return Ok(report);
    }
    let isolated = Mode::Isolated {
        max_attempts: max_attempts.max(1),
    };
    apply_in_transaction(pool, projection, events, isolated)
        .await?
        .context("a batch failed although every event was isolated")
}

/// `None` when an event failed in [`Mode::Optimistic`] (nothing was committed).
async fn apply_in_transaction(
    pool: &PgPool,
    projection: &dyn ErasedProjection,
    events: &[StoredEvent],
    mode: Mode,
) -> anyhow::Result<Option<BatchReport>> {
    let name = projection.erased_name();
    let mut tx = pool.begin().await.context("beginning a projection batch")?;
    let applied_before = lock_sequences(&mut tx, name, events).await?;
    let mut last_applied = applied_before.clone();
    let mut report = BatchReport::default();
    let plan = plan(&mut tx, events, &mut last_applied, &mut report).await?;
    match mode {
        Mode::Optimistic => {
            if let Err(error) = projection.erased_apply_batch(&mut tx, &plan).await {
                if is_transient(&error) {
                    // Isolating the events would only meet the same lock, deadlock or lost
                    // connection again, one savepoint at a time: retry the whole batch later.
                    return Err(error.context("applying a batch (transient failure)"));
                }
                tracing::debug!(
                    projection = name,
                    error = format!("{error:#}"),
                    "a batch failed: applying it again, one savepoint per event"
                );
                return Ok(None);
            }
            for event in plan.iter() {
                report.applied += 1;
                report.handled(event);
            }
        }
        Mode::Isolated { max_attempts } => {
            for event in plan.iter() {
                apply_isolated(&mut tx, projection, event, max_attempts, &mut report).await?;
            }
        }
    }
    let changed: Vec<_> = last_applied
        .iter()
        .filter(|(key, sequence)| applied_before.get(*key) != Some(sequence))
        .collect();
    store_progress(&mut tx, name, &changed, &report).await?;
    tx.commit().await.context("committing a projection batch")?;
    Ok(Some(report))
}

/// The events to apply, in order: duplicates left out (and counted), each gap filled from the
/// store just before the event that reveals it. Borrows `events` when nothing changes, which is
/// the usual case.
async fn plan<'e>(
    conn: &mut PgConnection,
    events: &'e [StoredEvent],
    last_applied: &mut HashMap<(String, String), i64>,
    report: &mut BatchReport,
) -> anyhow::Result<Cow<'e, [StoredEvent]>> {
    let mut plan: Option<Vec<StoredEvent>> = None;
    for (index, event) in events.iter().enumerate() {
        let key = (event.aggregate_type.clone(), event.aggregate_id.clone());
        let last = last_applied.get(&key).copied().unwrap_or(0);
        if event.sequence == last + 1 {
            if let Some(plan) = &mut plan {
                plan.push(event.clone());
            }
        } else {
            let plan = plan.get_or_insert_with(|| events[..index].to_vec());
            if event.sequence <= last {
                report.duplicates += 1;
                continue;
            }
            let missing = load_missing(conn, event, last).await?;
            report.healed += missing.len() as u64;
            plan.extend(missing);
            plan.push(event.clone());
        }
        last_applied.insert(key, event.sequence);
    }
    Ok(plan.map_or(Cow::Borrowed(events), Cow::Owned))
}

/// Applies one event under its own savepoint, up to `max_attempts` times, then parks it. A
/// transient failure is returned instead: the batch is rolled back and retried, never parked.
pub(crate) async fn apply_isolated(
    conn: &mut PgConnection,
    projection: &dyn ErasedProjection,
    event: &StoredEvent,
    max_attempts: u32,
    report: &mut BatchReport,
) -> anyhow::Result<()> {
    let mut failure = None;
    for _ in 0..max_attempts {
        let mut savepoint = conn.begin().await.context("setting a savepoint")?;
        match projection.erased_apply(&mut savepoint, event).await {
            Ok(()) => {
                savepoint.commit().await.context("releasing a savepoint")?;
                failure = None;
                break;
            }
            Err(error) if is_transient(&error) => {
                return Err(error.context(format!(
                    "applying {} (transient failure)",
                    event.message_id()
                )));
            }
            Err(error) => {
                // A connection that cannot even roll back is an infrastructure failure: the
                // whole batch fails instead of parking the event.
                savepoint
                    .rollback()
                    .await
                    .context("rolling back to a savepoint")?;
                failure = Some(error);
            }
        }
    }
    match failure {
        None => report.applied += 1,
        Some(error) => {
            let saga = projection.erased_saga_of(event);
            tracing::warn!(
                projection = projection.erased_name(),
                aggregate_type = %event.aggregate_type,
                aggregate_id = %event.aggregate_id,
                sequence = event.sequence,
                position = event.position,
                saga = saga.map(tracing::field::display),
                error = format!("{error:#}"),
                "an event kept failing: parked in dead_letters"
            );
            let parked = crate::dead_letters::Parked {
                projection: projection.erased_name(),
                event,
                error: &error,
                attempts: max_attempts,
                saga,
            };
            crate::dead_letters::park(conn, &parked).await?;
            report.parked += 1;
        }
    }
    report.handled(event);
    Ok(())
}

/// Locks (creating them at 0) the bookkeeping rows of the batch's aggregates, in a stable
/// order so that two workers sharing a consumer cannot deadlock, and returns their values. It
/// first takes the projection's lock, shared: a rebuild's swap takes it exclusively, so that no
/// batch writes to the tables it replaces (see [`crate::rebuild`]).
async fn lock_sequences(
    conn: &mut PgConnection,
    projection: &str,
    events: &[StoredEvent],
) -> anyhow::Result<HashMap<(String, String), i64>> {
    let mut keys: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.aggregate_type.as_str(), e.aggregate_id.as_str()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let (types, ids): (Vec<&str>, Vec<&str>) = keys.into_iter().unzip();
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "WITH gate AS MATERIALIZED (SELECT pg_advisory_xact_lock_shared($4, hashtext($1))) \
         INSERT INTO projection_sequences (projection, aggregate_type, aggregate_id, last_sequence) \
         SELECT $1, t, i, 0 FROM gate, UNNEST($2::text[], $3::text[]) WITH ORDINALITY AS k(t, i, n) \
         ORDER BY n \
         ON CONFLICT (projection, aggregate_type, aggregate_id) \
         DO UPDATE SET last_sequence = projection_sequences.last_sequence \
         RETURNING aggregate_type, aggregate_id, last_sequence",
    )
    .bind(projection)
    .bind(&types)
    .bind(&ids)
    .bind(crate::rebuild::PROJECTION_LOCK)
    .fetch_all(&mut *conn)
    .await
    .context("locking the per-aggregate sequences")?;
    Ok(rows
        .into_iter()
        .map(|(aggregate_type, aggregate_id, sequence)| ((aggregate_type, aggregate_id), sequence))
        .collect())
}

/// Stores the batch's per-aggregate sequences and the projection's progress, in one statement.
async fn store_progress(
    conn: &mut PgConnection,
    projection: &str,
    changed: &[(&(String, String), &i64)],
    report: &BatchReport,
) -> anyhow::Result<()> {
    let Some(position) = report.max_position else {
        // Nothing applied or parked: every event was a duplicate, no sequence moved.
        return Ok(());
    };
    let types: Vec<&str> = changed.iter().map(|((t, _), _)| t.as_str()).collect();
    let ids: Vec<&str> = changed.iter().map(|((_, i), _)| i.as_str()).collect();
    let sequences: Vec<i64> = changed.iter().map(|(_, s)| **s).collect();
    let lag = report.last_recorded_at.map_or(0.0, seconds_since);
    // A data-modifying WITH runs whether or not the main statement reads it.
    sqlx::query(
        "WITH sequences AS ( \
           UPDATE projection_sequences p SET last_sequence = u.s \
           FROM UNNEST($2::text[], $3::text[], $4::bigint[]) AS u(t, i, s) \
           WHERE p.projection = $1 AND p.aggregate_type = u.t AND p.aggregate_id = u.i) \
         INSERT INTO projection_positions \
           (name, position, last_applied_at, last_event_at, lag_seconds, state, updated_at) \
         VALUES ($1, $5, now(), $6, $7, 'running', now()) \
         ON CONFLICT (name) DO UPDATE SET \
           position = GREATEST(projection_positions.position, EXCLUDED.position), \
           last_applied_at = now(), \
           last_event_at = EXCLUDED.last_event_at, \
           lag_seconds = EXCLUDED.lag_seconds, \
           state = 'running', \
           last_error = NULL, \
           updated_at = now()",
    )
    .bind(projection)
    .bind(&types)
    .bind(&ids)
    .bind(&sequences)
    .bind(position)
    .bind(report.last_recorded_at)
    .bind(lag)
    .execute(&mut *conn)
    .await
    .context("storing the projection's sequences and progress")?;
    Ok(())
}

/// The events of `event`'s aggregate between the last applied one and it, from the store.
async fn load_missing(
    conn: &mut PgConnection,
    event: &StoredEvent,
    last_applied: i64,
) -> anyhow::Result<Vec<StoredEvent>> {
    let missing: Vec<StoredEvent> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, sequence, position, event_type, event_version, \
                payload, metadata, recorded_at \
         FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 AND sequence < $4 \
         ORDER BY sequence",
    )
    .bind(&event.aggregate_type)
    .bind(&event.aggregate_id)
    .bind(last_applied)
    .bind(event.sequence)
    .fetch_all(&mut *conn)
    .await
    .context("reading missing events from the store")?;
    let expected = event.sequence - last_applied - 1;
    if i64::try_from(missing.len()).ok() != Some(expected) {
        tracing::warn!(
            aggregate_type = %event.aggregate_type,
            aggregate_id = %event.aggregate_id,
            from = last_applied + 1,
            to = event.sequence - 1,
            found = missing.len(),
            "the event store does not hold every missing event"
        );
    } else {
        tracing::debug!(
            aggregate_type = %event.aggregate_type,
            aggregate_id = %event.aggregate_id,
            count = expected,
            "healing a gap from the event store"
        );
    }
    Ok(missing)
}

/// Seconds from `at` to now, never negative.
pub(crate) fn seconds_since(at: DateTime<Utc>) -> f64 {
    (Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0
}

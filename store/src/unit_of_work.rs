//! Everything one command writes, committed in one transaction.

use anyhow::Context;
use serde_json::Value;
use sqlx::PgPool;

use crate::{Claim, CommitError, IdempotencyRecord};

/// New events of one stream, to append after `expected_version`.
#[derive(Debug, Clone)]
pub struct Append {
    pub aggregate_type: &'static str,
    pub aggregate_id: String,
    /// The stream's version the events were decided on; the first new event gets this plus one.
    pub expected_version: i64,
    /// `(event_type, event_version, payload)` per event.
    pub events: Vec<(String, String, Value)>,
    pub metadata: Value,
}

/// A snapshot of an aggregate's state at `version`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub aggregate_type: &'static str,
    pub aggregate_id: String,
    pub version: i64,
    pub state: Value,
}

/// What one command writes.
#[derive(Debug, Default)]
pub struct UnitOfWork {
    pub appends: Vec<Append>,
    pub snapshots: Vec<Snapshot>,
    pub claims: Vec<Claim>,
    /// The response to remember; its version and position are filled in from the appends.
    pub idempotency: Option<IdempotencyRecord>,
}

/// What a committed unit of work produced: the global position of each append's last event
/// (`None` for an append without events), in the order of `appends`.
#[derive(Debug, Clone)]
pub struct Committed {
    pub positions: Vec<Option<i64>>,
}

impl Committed {
    /// The position of the last event written.
    pub fn last_position(&self) -> Option<i64> {
        self.positions.iter().flatten().max().copied()
    }
}

fn is_unique_violation_of(error: &sqlx::Error, constraint: &str) -> bool {
    error
        .as_database_error()
        .is_some_and(|e| e.code().as_deref() == Some("23505") && e.constraint() == Some(constraint))
}

impl UnitOfWork {
    /// Commits everything or nothing.
    pub async fn commit(mut self, pool: &PgPool) -> Result<Committed, CommitError> {
        // Events and nothing beside them: a single INSERT is atomic on its own, and saves the
        // BEGIN and COMMIT round trips on the hot path.
        if self.claims.is_empty() && self.snapshots.is_empty() && self.idempotency.is_none() {
            let positions = insert_events(pool, &self.appends).await?;
            return Ok(Committed { positions });
        }
        let mut tx = pool.begin().await.context("beginning a transaction")?;
        for claim in &self.claims {
            if !claim.insert(&mut tx).await? {
                return Err(CommitError::ClaimTaken(claim.clone()));
            }
        }
        let positions = insert_events(&mut *tx, &self.appends).await?;
        for snapshot in &self.snapshots {
            sqlx::query(
                "INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, payload) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE \
                 SET last_sequence = EXCLUDED.last_sequence, payload = EXCLUDED.payload, taken_at = now() \
                 WHERE snapshots.last_sequence < EXCLUDED.last_sequence",
            )
            .bind(snapshot.aggregate_type)
            .bind(&snapshot.aggregate_id)
            .bind(snapshot.version)
            .bind(&snapshot.state)
            .execute(&mut *tx)
            .await
            .context("writing a snapshot")?;
        }
        let committed = Committed { positions };
        if let Some(record) = self.idempotency.as_mut() {
            if record.response.position.is_none() {
                record.response.position = committed.last_position();
            }
            if !crate::idempotency::insert(record, &mut tx).await? {
                return Err(CommitError::DuplicateRequest);
            }
        }
        tx.commit().await.context("committing")?;
        Ok(committed)
    }
}

/// Appends the streams' new events in one statement: per append, the global position of its
/// last event (`None` if it had none).
async fn insert_events<'e, E>(
    executor: E,
    appends: &[Append],
) -> Result<Vec<Option<i64>>, CommitError>
where
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    let rows = appends.iter().map(|a| a.events.len()).sum();
    if rows == 0 {
        return Ok(vec![None; appends.len()]);
    }
    let mut aggregate_types = Vec::with_capacity(rows);
    let mut aggregate_ids = Vec::with_capacity(rows);
    let mut sequences = Vec::with_capacity(rows);
    let mut event_types = Vec::with_capacity(rows);
    let mut event_versions = Vec::with_capacity(rows);
    let mut payloads = Vec::with_capacity(rows);
    let mut metadata = Vec::with_capacity(rows);
    for append in appends {
        for (n, (event_type, event_version, payload)) in (1..).zip(&append.events) {
            aggregate_types.push(append.aggregate_type);
            aggregate_ids.push(append.aggregate_id.as_str());
            sequences.push(append.expected_version + n);
            event_types.push(event_type.as_str());
            event_versions.push(event_version.as_str());
            payloads.push(payload);
            metadata.push(&append.metadata);
        }
    }
    let result: Result<Vec<(String, String, i64, i64)>, sqlx::Error> = sqlx::query_as(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[]) \
         RETURNING aggregate_type, aggregate_id, sequence, position",
    )
    .bind(&aggregate_types)
    .bind(&aggregate_ids)
    .bind(&sequences)
    .bind(&event_types)
    .bind(&event_versions)
    .bind(&payloads)
    .bind(&metadata)
    .fetch_all(executor)
    .await;
    let inserted = match result {
        Ok(inserted) => inserted,
        Err(e) if is_unique_violation_of(&e, "events_pkey") => return Err(CommitError::Conflict),
        Err(e) => {
            return Err(CommitError::Database(
                anyhow::Error::new(e).context("appending events"),
            ))
        }
    };
    // Several appends may extend one stream (a group of commands): each owns its sequences.
    Ok(appends
        .iter()
        .map(|append| {
            let last = append.expected_version + append.events.len() as i64;
            inserted
                .iter()
                .filter(|(t, i, sequence, _)| {
                    t == append.aggregate_type
                        && *i == append.aggregate_id
                        && (append.expected_version + 1..=last).contains(sequence)
                })
                .map(|(_, _, _, position)| *position)
                .max()
        })
        .collect())
}

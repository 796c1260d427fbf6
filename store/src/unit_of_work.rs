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
        // One stream and nothing beside it: a single INSERT is atomic on its own, and saves the
        // BEGIN and COMMIT round trips on the hot path.
        if let [append] = &self.appends[..] {
            if self.claims.is_empty() && self.snapshots.is_empty() && self.idempotency.is_none() {
                let position = insert_events(pool, append).await?;
                return Ok(Committed {
                    positions: vec![position],
                });
            }
        }
        let mut tx = pool.begin().await.context("beginning a transaction")?;
        for claim in &self.claims {
            if !claim.insert(&mut tx).await? {
                return Err(CommitError::ClaimTaken(claim.clone()));
            }
        }
        let mut positions = Vec::with_capacity(self.appends.len());
        for append in &self.appends {
            positions.push(insert_events(&mut *tx, append).await?);
        }
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

/// Appends one stream's new events: the global position of the last, `None` if there were none.
async fn insert_events<'e, E>(executor: E, append: &Append) -> Result<Option<i64>, CommitError>
where
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    if append.events.is_empty() {
        return Ok(None);
    }
    let count = append.events.len() as i64;
    let sequences: Vec<i64> = (1..=count).map(|n| append.expected_version + n).collect();
    let types: Vec<&str> = append.events.iter().map(|(t, _, _)| t.as_str()).collect();
    let versions: Vec<&str> = append.events.iter().map(|(_, v, _)| v.as_str()).collect();
    let payloads: Vec<&Value> = append.events.iter().map(|(_, _, p)| p).collect();
    let result: Result<Option<i64>, sqlx::Error> = sqlx::query_scalar(
        "WITH appended AS ( \
           INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
           SELECT $1, $2, s, t, v, p, $7 FROM UNNEST($3::bigint[], $4::text[], $5::text[], $6::jsonb[]) AS e(s, t, v, p) \
           RETURNING position) \
         SELECT max(position) FROM appended",
    )
    .bind(append.aggregate_type)
    .bind(&append.aggregate_id)
    .bind(&sequences)
    .bind(&types)
    .bind(&versions)
    .bind(&payloads)
    .bind(&append.metadata)
    .fetch_one(executor)
    .await;
    match result {
        Ok(position) => Ok(position),
        Err(e) if is_unique_violation_of(&e, "events_pkey") => Err(CommitError::Conflict),
        Err(e) => Err(CommitError::Database(
            anyhow::Error::new(e).context("appending events"),
        )),
    }
}

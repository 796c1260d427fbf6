//! Everything one command writes, committed in one transaction.

use std::sync::Arc;

use anyhow::Context;
use futures::future::BoxFuture;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use crate::{Claim, CommitError, IdempotencyRecord};

/// A check run first inside a unit of work's transaction, and rows kept with its events: a saga
/// step's fencing token (the worker must still hold the saga's lease) and the saga's deadline.
/// An `Err` rolls the whole unit back.
pub type Guard = Arc<
    dyn for<'c> Fn(&'c mut PgConnection) -> BoxFuture<'c, Result<(), CommitError>> + Send + Sync,
>;

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
#[derive(Default)]
pub struct UnitOfWork {
    pub appends: Vec<Append>,
    pub snapshots: Vec<Snapshot>,
    pub claims: Vec<Claim>,
    /// The response to remember; its version and position are filled in from the appends.
    pub idempotency: Option<IdempotencyRecord>,
    pub guards: Vec<Guard>,
}

/// What a committed unit of work produced: the global position of each append's last event
/// (`None` for an append without events), in the order of `appends`.
#[derive(Debug, Clone, Default)]
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
    /// Whether committing would write anything a reader could notice (snapshots alone are not).
    pub fn writes_anything(&self) -> bool {
        self.appends.iter().any(|a| !a.events.is_empty())
            || !self.claims.is_empty()
            || self.idempotency.is_some()
    }

    /// Commits everything or nothing, in an `append` span (the first aggregate's type, the
    /// number of events).
    #[tracing::instrument(
        name = "append",
        skip_all,
        fields(
            aggregate = self.appends.first().map_or("", |append| append.aggregate_type),
            events = self.appends.iter().map(|append| append.events.len()).sum::<usize>(),
        ),
        err(level = "debug")
    )]
    pub async fn commit(&mut self, pool: &PgPool) -> Result<Committed, CommitError> {
        // Events and nothing beside them: a single INSERT is atomic on its own, and saves the
        // BEGIN and COMMIT round trips on the hot path.
        if self.claims.is_empty()
            && self.snapshots.is_empty()
            && self.idempotency.is_none()
            && self.guards.is_empty()
        {
            let positions = insert_events(pool, &self.appends).await?;
            return Ok(Committed { positions });
        }
        let mut tx = pool.begin().await.context("beginning a transaction")?;
        for guard in &self.guards {
            guard(&mut tx).await?;
        }
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

impl UnitOfWork {
    /// Commits, and after a connection error on the way (the outcome unknown) looks whether the
    /// events landed: deciding again on a command that did land (a restock) would apply it
    /// twice, so what cannot be shown to have landed is answered as unknown, never retried.
    pub async fn commit_or_find(&mut self, pool: &PgPool) -> Result<Committed, CommitError> {
        let error = match self.commit(pool).await {
            Err(CommitError::Database(error)) if !CommitError::refused_by_database(&error) => error,
            other => return other,
        };
        match self.landed(pool).await {
            Ok(Some(committed)) => {
                tracing::info!("a commit whose answer was lost had landed");
                Ok(committed)
            }
            Ok(None) => Err(CommitError::Unknown(error)),
            Err(lookup) => Err(CommitError::Unknown(error.context(format!("{lookup:#}")))),
        }
    }

    /// Whether this unit's events are in the store after all: after a connection error during a
    /// commit its outcome is unknown, and deciding again on a command that did land (a restock)
    /// would apply it twice. The events are recognised by stream, sequence, payload and metadata
    /// (which carries the request's correlation id); a unit commits whole or not at all.
    pub async fn landed(&self, pool: &PgPool) -> anyhow::Result<Option<Committed>> {
        let rows = Rows::of(&self.appends);
        if rows.sequences.is_empty() {
            return Ok(None);
        }
        let found: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT e.aggregate_type, e.aggregate_id, e.sequence, e.position \
             FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::jsonb[], $5::jsonb[]) AS u(t, i, s, p, m) \
             JOIN events e ON e.aggregate_type = u.t AND e.aggregate_id = u.i AND e.sequence = u.s \
             WHERE e.payload = u.p AND e.metadata = u.m",
        )
        .bind(&rows.aggregate_types)
        .bind(&rows.aggregate_ids)
        .bind(&rows.sequences)
        .bind(&rows.payloads)
        .bind(&rows.metadata)
        .fetch_all(pool)
        .await
        .context("checking whether a commit landed")?;
        if found.is_empty() {
            return Ok(None);
        }
        anyhow::ensure!(
            found.len() == rows.sequences.len(),
            "only {} of {} events of one commit are in the store",
            found.len(),
            rows.sequences.len()
        );
        Ok(Some(Committed {
            positions: positions_per_append(&self.appends, &found),
        }))
    }
}

/// The events of some appends, as the columns of one `UNNEST`.
struct Rows<'a> {
    aggregate_types: Vec<&'static str>,
    aggregate_ids: Vec<&'a str>,
    sequences: Vec<i64>,
    event_types: Vec<&'a str>,
    event_versions: Vec<&'a str>,
    payloads: Vec<&'a Value>,
    metadata: Vec<&'a Value>,
}

impl<'a> Rows<'a> {
    fn of(appends: &'a [Append]) -> Self {
        let rows = appends.iter().map(|a| a.events.len()).sum();
        let mut columns = Rows {
            aggregate_types: Vec::with_capacity(rows),
            aggregate_ids: Vec::with_capacity(rows),
            sequences: Vec::with_capacity(rows),
            event_types: Vec::with_capacity(rows),
            event_versions: Vec::with_capacity(rows),
            payloads: Vec::with_capacity(rows),
            metadata: Vec::with_capacity(rows),
        };
        for append in appends {
            for (n, (event_type, event_version, payload)) in (1..).zip(&append.events) {
                columns.aggregate_types.push(append.aggregate_type);
                columns.aggregate_ids.push(append.aggregate_id.as_str());
                columns.sequences.push(append.expected_version + n);
                columns.event_types.push(event_type.as_str());
                columns.event_versions.push(event_version.as_str());
                columns.payloads.push(payload);
                columns.metadata.push(&append.metadata);
            }
        }
        columns
    }
}

/// Per append, the position of its last event among `written` (`None` if it had none).
/// Several appends may extend one stream (a group of commands): each owns its sequences.
fn positions_per_append(
    appends: &[Append],
    written: &[(String, String, i64, i64)],
) -> Vec<Option<i64>> {
    appends
        .iter()
        .map(|append| {
            let last = append.expected_version + append.events.len() as i64;
            written
                .iter()
                .filter(|(t, i, sequence, _)| {
                    t == append.aggregate_type
                        && *i == append.aggregate_id
                        && (append.expected_version + 1..=last).contains(sequence)
                })
                .map(|(_, _, _, position)| *position)
                .max()
        })
        .collect()
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
    let rows = Rows::of(appends);
    if rows.sequences.is_empty() {
        return Ok(vec![None; appends.len()]);
    }
    let result: Result<Vec<(String, String, i64, i64)>, sqlx::Error> = sqlx::query_as(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[]) \
         RETURNING aggregate_type, aggregate_id, sequence, position",
    )
    .bind(&rows.aggregate_types)
    .bind(&rows.aggregate_ids)
    .bind(&rows.sequences)
    .bind(&rows.event_types)
    .bind(&rows.event_versions)
    .bind(&rows.payloads)
    .bind(&rows.metadata)
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
    Ok(positions_per_append(appends, &inserted))
}

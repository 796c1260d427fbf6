//! Which checkout sagas exist, which are stuck and why.
//!
//! A saga exists once it has a stream (its recorded steps), a row in `saga_deadlines` (it is to
//! be woken) or a row in `stuck_sagas` (its trigger event was parked before it ever started).
//! It is **stuck** when nothing is going to move it:
//!
//! - `past_deadline`: it was due more than [`GRACE_SECONDS`] ago and no worker holds it (workers
//!   poll every few hundred milliseconds: a saga due that long is not being picked up);
//! - `lease_lost`: a worker claimed it and its lease lapsed (the worker died or hangs); another
//!   worker takes it over, unless none is running;
//! - `parked_event`: the saga trigger parked an event of its order (`stuck_sagas`): nothing
//!   else will wake it.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// How long past its deadline an unclaimed saga counts as stuck.
pub const GRACE_SECONDS: f64 = 30.0;

/// One saga's scheduling and stuck state.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SagaRow {
    pub saga_id: Uuid,
    pub due_at: Option<DateTime<Utc>>,
    pub attempts: Option<i32>,
    pub dead_letter_id: Option<i64>,
    pub past_deadline: bool,
    pub lease_lost: bool,
    pub parked_event: bool,
    /// The last step recorded or the moment it got stuck, whichever is later.
    pub updated_at: Option<DateTime<Utc>>,
}

impl SagaRow {
    pub fn stuck(&self) -> bool {
        self.past_deadline || self.lease_lost || self.parked_event
    }

    /// The listing's order: stuck ones first, then by id.
    pub fn key(&self) -> (i32, Uuid) {
        (i32::from(!self.stuck()), self.saga_id)
    }

    pub fn stuck_reasons(&self) -> Vec<&'static str> {
        [
            (self.past_deadline, "past_deadline"),
            (self.lease_lost, "lease_lost"),
            (self.parked_event, "parked_event"),
        ]
        .into_iter()
        .filter_map(|(is, reason)| is.then_some(reason))
        .collect()
    }
}

/// The columns of [`SagaRow`] for the saga ids of the CTE `ids (saga_id)`.
const ROWS: &str = "rows AS ( \
     SELECT i.saga_id, d.due_at, d.attempts, s.dead_letter_id, \
         COALESCE(d.locked_by IS NULL AND d.due_at < now() - make_interval(secs => $1), false) AS past_deadline, \
         COALESCE(d.locked_by IS NOT NULL AND d.locked_until < now(), false) AS lease_lost, \
         s.saga_id IS NOT NULL AS parked_event, \
         GREATEST((SELECT max(e.recorded_at) FROM events e \
                   WHERE e.aggregate_type = 'checkout_saga' AND e.aggregate_id = i.saga_id::text), \
                  s.stuck_at) AS updated_at \
     FROM ids i LEFT JOIN saga_deadlines d USING (saga_id) LEFT JOIN stuck_sagas s USING (saga_id)) ";

/// Up to `limit` sagas after the one with key `after`, stuck ones first, then by id; only the
/// stuck ones (or only the others) when `stuck` says so.
pub async fn page(
    pool: &PgPool,
    stuck: Option<bool>,
    after: Option<(i32, Uuid)>,
    limit: i64,
) -> anyhow::Result<Vec<SagaRow>> {
    let (rank, id) = after.unwrap_or((-1, Uuid::nil()));
    sqlx::query_as(&format!(
        "WITH ids AS ( \
             SELECT aggregate_id::uuid AS saga_id FROM events \
             WHERE aggregate_type = 'checkout_saga' AND sequence = 1 \
             UNION SELECT saga_id FROM saga_deadlines \
             UNION SELECT saga_id FROM stuck_sagas), \
         {ROWS}, \
         ranked AS (SELECT *, CASE WHEN past_deadline OR lease_lost OR parked_event THEN 0 ELSE 1 END AS rank \
                    FROM rows) \
         SELECT saga_id, due_at, attempts, dead_letter_id, past_deadline, lease_lost, parked_event, updated_at \
         FROM ranked \
         WHERE ($2::bool IS NULL OR (rank = 0) = $2) AND (rank, saga_id) > ($3, $4) \
         ORDER BY rank, saga_id LIMIT $5"
    ))
    .bind(GRACE_SECONDS)
    .bind(stuck)
    .bind(rank)
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await
    .context("listing sagas")
}

/// The saga `saga_id`, if it exists.
pub async fn one(pool: &PgPool, saga_id: Uuid) -> anyhow::Result<Option<SagaRow>> {
    sqlx::query_as(&format!(
        "WITH ids AS ( \
             SELECT $2::uuid AS saga_id WHERE \
                 EXISTS (SELECT 1 FROM events WHERE aggregate_type = 'checkout_saga' AND aggregate_id = $2::uuid::text) \
                 OR EXISTS (SELECT 1 FROM saga_deadlines WHERE saga_id = $2) \
                 OR EXISTS (SELECT 1 FROM stuck_sagas WHERE saga_id = $2)), \
         {ROWS} \
         SELECT saga_id, due_at, attempts, dead_letter_id, past_deadline, lease_lost, parked_event, updated_at \
         FROM rows"
    ))
    .bind(GRACE_SECONDS)
    .bind(saga_id)
    .fetch_optional(pool)
    .await
    .context("reading a saga")
}

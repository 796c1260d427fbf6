//! The `saga_deadlines` table: when each saga needs a worker next, and who holds it.
//!
//! A worker holds a saga under a lease with a fencing token (`fence`, bumped by every claim).
//! Everything it writes about the saga checks the token: its steps (inside their own transaction,
//! through [`fence`]), renewals, releases and the final delete. A worker that outlived its lease
//! writes nothing.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use commerce_store::{CommitError, Guard};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

pub use commerce_store::saga_due::{wake, SAGA_DUE_CHANNEL};

/// A saga a worker claimed: the wake-up it answers, and its fencing token.
#[derive(Debug, Clone, Copy)]
pub struct Claimed {
    pub saga_id: Uuid,
    pub generation: i64,
    pub fence: i64,
}

/// Wakes one saga now (an operator's retry), exactly as its order's events wake it, inside the
/// caller's transaction: when it is due.
pub async fn wake_now(
    conn: &mut PgConnection,
    saga_id: Uuid,
    reason: &str,
) -> anyhow::Result<DateTime<Utc>> {
    wake(conn, &[saga_id], &[reason]).await?;
    sqlx::query_scalar("SELECT due_at FROM saga_deadlines WHERE saga_id = $1")
        .bind(saga_id)
        .fetch_one(&mut *conn)
        .await
        .context("reading when the saga is due")
}

/// Claims up to `limit` sagas for `worker` until `lease` from now: those due, and those whose
/// worker's lease lapsed (it died mid-saga: resume at once, not at the next deadline). Rows
/// another worker holds are skipped, not waited for. Every claim takes a new fencing token.
pub async fn claim(
    pool: &PgPool,
    worker: &str,
    limit: i64,
    lease: Duration,
) -> anyhow::Result<Vec<Claimed>> {
    let rows: Vec<(Uuid, i64, i64)> = sqlx::query_as(
        "WITH due AS ( \
             SELECT saga_id FROM saga_deadlines \
             WHERE (locked_until IS NULL AND due_at <= now()) OR locked_until < now() \
             ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
         UPDATE saga_deadlines d SET locked_by = $1, locked_until = now() + $3 * interval '1 millisecond', \
             attempts = d.attempts + 1, fence = nextval('saga_lease_fences') \
         FROM due WHERE d.saga_id = due.saga_id RETURNING d.saga_id, d.generation, d.fence",
    )
    .bind(worker)
    .bind(limit)
    .bind(lease.as_millis() as f64)
    .fetch_all(pool)
    .await
    .context("claiming due sagas")?;
    Ok(rows
        .into_iter()
        .map(|(saga_id, generation, fence)| Claimed {
            saga_id,
            generation,
            fence,
        })
        .collect())
}

/// Keeps holding a claimed saga for another `lease`: false if the claim was lost.
pub async fn renew(pool: &PgPool, claimed: Claimed, lease: Duration) -> anyhow::Result<bool> {
    let renewed = sqlx::query(
        "UPDATE saga_deadlines SET locked_until = now() + $3 * interval '1 millisecond' \
         WHERE saga_id = $1 AND fence = $2",
    )
    .bind(claimed.saga_id)
    .bind(claimed.fence)
    .bind(lease.as_millis() as f64)
    .execute(pool)
    .await
    .context("renewing a saga lease")?;
    Ok(renewed.rows_affected() == 1)
}

/// What a saga step leaves in the saga's row, beside checking the lease.
#[derive(Debug, Clone, Copy)]
pub enum Due {
    /// Nothing changes.
    AsItWas,
    /// The saga must be looked at again by `at` (an unanswered authorisation times out then),
    /// even if this worker dies first.
    At(DateTime<Utc>, &'static str),
}

/// The guard of a saga step's transaction: it commits only while `claimed` is still the saga's
/// latest claim (the row is locked until the step commits, so no claim slips in between), and
/// records `due` with the step.
pub fn fence(claimed: Claimed, due: Due) -> Guard {
    std::sync::Arc::new(move |conn: &mut PgConnection| {
        Box::pin(async move {
            let (at, reason) = match due {
                Due::AsItWas => (None, None),
                Due::At(at, reason) => (Some(at), Some(reason)),
            };
            // One statement checks the token, locks the row until the step commits and sets
            // the deadline.
            let held = sqlx::query(
                "UPDATE saga_deadlines SET due_at = COALESCE($3, due_at), reason = COALESCE($4, reason) \
                 WHERE saga_id = $1 AND fence = $2",
            )
            .bind(claimed.saga_id)
            .bind(claimed.fence)
            .bind(at)
            .bind(reason)
            .execute(&mut *conn)
            .await
            .context("checking the saga's lease")?;
            if held.rows_affected() == 0 {
                metrics::counter!("commerce_saga_fenced_writes_total").increment(1);
                tracing::warn!(saga = %claimed.saga_id, held = claimed.fence, "refusing a step: this worker lost the saga's lease");
                return Err(CommitError::Fenced(format!(
                    "saga {} is no longer held under lease {}",
                    claimed.saga_id, claimed.fence
                )));
            }
            Ok(())
        })
    })
}

/// The saga has nothing left to do until `next_due` (or until something happens to its order,
/// when `None`): let go of it until then, or forget it. Woken again meanwhile, it is due at
/// once. Nothing happens if the claim was lost.
pub async fn finish(
    pool: &PgPool,
    claimed: Claimed,
    next_due: Option<DateTime<Utc>>,
) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await.context("finishing a saga")?;
    finish_in(&mut conn, claimed, next_due).await
}

/// [`finish`], inside the caller's transaction (the saga's last steps): one statement.
pub async fn finish_in(
    conn: &mut PgConnection,
    claimed: Claimed,
    next_due: Option<DateTime<Utc>>,
) -> anyhow::Result<()> {
    let statement = match next_due {
        Some(_) => {
            "UPDATE saga_deadlines SET locked_by = NULL, locked_until = NULL, \
                 due_at = CASE WHEN generation = $2 THEN $4 ELSE now() END, \
                 reason = CASE WHEN generation = $2 THEN 'return_window' ELSE reason END \
             WHERE saga_id = $1 AND fence = $3"
        }
        // Forgotten unless woken meanwhile: then due now, whatever deadline a step had set.
        None => {
            "WITH gone AS (DELETE FROM saga_deadlines \
                 WHERE saga_id = $1 AND generation = $2 AND fence = $3 RETURNING saga_id) \
             UPDATE saga_deadlines SET locked_by = NULL, locked_until = NULL, due_at = now() \
             WHERE saga_id = $1 AND fence = $3 AND NOT EXISTS (SELECT 1 FROM gone)"
        }
    };
    sqlx::query(statement)
        .bind(claimed.saga_id)
        .bind(claimed.generation)
        .bind(claimed.fence)
        .bind(next_due)
        .execute(conn)
        .await
        .context("finishing a saga")?;
    Ok(())
}

/// Lets go of the saga; it is due again at `due_at` (or as it was). Nothing happens if the
/// claim was lost.
pub async fn release(
    pool: &PgPool,
    claimed: Claimed,
    due_at: Option<DateTime<Utc>>,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE saga_deadlines SET locked_by = NULL, locked_until = NULL, due_at = COALESCE($3, due_at) \
         WHERE saga_id = $1 AND fence = $2",
    )
    .bind(claimed.saga_id)
    .bind(claimed.fence)
    .bind(due_at)
    .execute(pool)
    .await
    .context("releasing a saga")?;
    Ok(())
}

//! The `saga_deadlines` table: when each saga needs a worker next, and who holds it.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// The channel a wake-up is announced on, so idle workers need not wait for their next poll.
pub const SAGA_DUE_CHANNEL: &str = "saga_due";

/// A saga a worker claimed, and the wake-up it answers.
#[derive(Debug, Clone, Copy)]
pub struct Claimed {
    pub saga_id: Uuid,
    pub generation: i64,
}

/// Wakes the sagas `ids` now, each for its `reasons` entry (inside the caller's transaction),
/// creating their rows if needed. One id must not appear twice.
pub async fn wake(conn: &mut PgConnection, ids: &[Uuid], reasons: &[&str]) -> anyhow::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO saga_deadlines (saga_id, due_at, reason) \
         SELECT id, now(), reason FROM UNNEST($1::uuid[], $2::text[]) AS w(id, reason) \
         ON CONFLICT (saga_id) DO UPDATE SET due_at = LEAST(saga_deadlines.due_at, now()), \
             reason = EXCLUDED.reason, generation = saga_deadlines.generation + 1",
    )
    .bind(ids)
    .bind(reasons)
    .execute(&mut *conn)
    .await
    .context("waking sagas")?;
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(SAGA_DUE_CHANNEL)
        .execute(&mut *conn)
        .await
        .context("announcing a wake-up")?;
    Ok(())
}

/// Claims up to `limit` sagas for `worker` until `lease` from now: those due, and those whose
/// worker's lease lapsed (it died mid-saga: resume at once, not at the next deadline). Rows
/// another worker holds are skipped, not waited for.
pub async fn claim(
    pool: &PgPool,
    worker: &str,
    limit: i64,
    lease: Duration,
) -> anyhow::Result<Vec<Claimed>> {
    let rows: Vec<(Uuid, i64)> = sqlx::query_as(
        "WITH due AS ( \
             SELECT saga_id FROM saga_deadlines \
             WHERE (locked_until IS NULL AND due_at <= now()) OR locked_until < now() \
             ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
         UPDATE saga_deadlines d SET locked_by = $1, locked_until = now() + $3 * interval '1 millisecond', \
             attempts = d.attempts + 1 \
         FROM due WHERE d.saga_id = due.saga_id RETURNING d.saga_id, d.generation",
    )
    .bind(worker)
    .bind(limit)
    .bind(lease.as_millis() as f64)
    .fetch_all(pool)
    .await
    .context("claiming due sagas")?;
    Ok(rows
        .into_iter()
        .map(|(saga_id, generation)| Claimed {
            saga_id,
            generation,
        })
        .collect())
}

/// Keeps holding a claimed saga for another `lease`: false if the claim was lost.
pub async fn renew(pool: &PgPool, worker: &str, id: Uuid, lease: Duration) -> anyhow::Result<bool> {
    let renewed = sqlx::query(
        "UPDATE saga_deadlines SET locked_until = now() + $3 * interval '1 millisecond' WHERE saga_id = $1 AND locked_by = $2",
    )
    .bind(id)
    .bind(worker)
    .bind(lease.as_millis() as f64)
    .execute(pool)
    .await
    .context("renewing a saga lease")?;
    Ok(renewed.rows_affected() == 1)
}

/// Records when an unanswered authorisation times out, so another worker can act on it if this
/// one dies while waiting.
pub async fn set_payment_deadline(
    pool: &PgPool,
    id: Uuid,
    deadline: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE saga_deadlines SET due_at = $2, reason = 'payment_timeout' WHERE saga_id = $1",
    )
    .bind(id)
    .bind(deadline)
    .execute(pool)
    .await
    .context("setting the payment deadline")?;
    Ok(())
}

/// The saga has nothing left to do: forget it, unless it was woken again meanwhile.
pub async fn finish(pool: &PgPool, claimed: Claimed) -> anyhow::Result<()> {
    let deleted = sqlx::query("DELETE FROM saga_deadlines WHERE saga_id = $1 AND generation = $2")
        .bind(claimed.saga_id)
        .bind(claimed.generation)
        .execute(pool)
        .await
        .context("finishing a saga")?;
    if deleted.rows_affected() == 0 {
        release(pool, claimed.saga_id, None).await?;
    }
    Ok(())
}

/// Lets go of the saga; it is due again at `due_at` (or as it was).
pub async fn release(pool: &PgPool, id: Uuid, due_at: Option<DateTime<Utc>>) -> anyhow::Result<()> {
    sqlx::query("UPDATE saga_deadlines SET locked_by = NULL, locked_until = NULL, due_at = COALESCE($2, due_at) WHERE saga_id = $1")
        .bind(id)
        .bind(due_at)
        .execute(pool)
        .await
        .context("releasing a saga")?;
    Ok(())
}

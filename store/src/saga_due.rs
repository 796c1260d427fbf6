//! Waking checkout sagas: a row of `saga_deadlines` due now, announced on a channel so idle
//! saga workers need not wait for their next poll. Written inside the transaction of whatever
//! wakes the saga: the checkout that places the order (so the saga starts without waiting for
//! the event to travel the relay and a projection), or the projection of the order's later events.

use anyhow::Context;
use sqlx::PgConnection;
use uuid::Uuid;

/// The channel a wake-up is announced on.
pub const SAGA_DUE_CHANNEL: &str = "saga_due";

/// Wakes the sagas `ids` now, each for its `reasons` entry, creating their rows if needed. One
/// id must not appear twice.
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
    announce(conn).await
}

/// Wakes the sagas of the placed orders `ids` that were never woken: neither due nor started
/// (the checkout that placed them wakes them itself; an order placed before it did, or whose
/// wake-up was lost, is woken here).
pub async fn start(conn: &mut PgConnection, ids: &[Uuid]) -> anyhow::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let woken = sqlx::query(
        "INSERT INTO saga_deadlines (saga_id, due_at, reason) \
         SELECT id, now(), 'order_placed' FROM UNNEST($1::uuid[]) AS w(id) \
         WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.aggregate_type = 'checkout_saga' \
             AND e.aggregate_id = w.id::text AND e.sequence = 1) \
         ON CONFLICT (saga_id) DO NOTHING",
    )
    .bind(ids)
    .execute(&mut *conn)
    .await
    .context("starting sagas")?;
    if woken.rows_affected() > 0 {
        announce(conn).await?;
    }
    Ok(())
}

async fn announce(conn: &mut PgConnection) -> anyhow::Result<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(SAGA_DUE_CHANNEL)
        .execute(&mut *conn)
        .await
        .context("announcing a wake-up")?;
    Ok(())
}

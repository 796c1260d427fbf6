//! Replay: events per second applying the orders projection straight from the event store, in
//! commit order, the way a rebuild does (`commerce_projections::apply_from_store`).
//!
//! The events go into a scratch database of their own (migrated like the engine's, but with no
//! relay or projection running on it): `OrderPlaced` events shaped exactly like one a real
//! checkout produced in this run, each for a new order and buyer, inserted server-side in
//! batches (`INSERT … SELECT generate_series`), then analysed.

use std::str::FromStr;

use anyhow::Context;
use commerce_projections::read_models::Orders;
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Executor};
use tokio::time::Instant;

use super::Bench;
use crate::client::checkout_body;
use crate::report::Row;

const NAME: &str = "replay";
/// Events per inserting statement (and transaction).
const INSERT_BATCH: usize = 50_000;

/// An `OrderPlaced` event of this run's engine: `(event_version, payload, metadata)`, checking
/// one out first if there is none yet.
async fn real_order_placed(bench: &Bench<'_>) -> anyhow::Result<(String, Value, Value)> {
    let query = "SELECT event_version, payload, metadata FROM events \
                 WHERE aggregate_type = 'order' AND event_type = 'OrderPlaced' \
                 ORDER BY position DESC LIMIT 1";
    if let Some(found) = sqlx::query_as(query)
        .fetch_optional(&bench.engine.pool)
        .await?
    {
        return Ok(found);
    }
    let buyer = bench.shop.buyer()?;
    let sku = bench.shop.skus.first().context("the shop has no SKU")?;
    bench
        .shop
        .set_quantity(&buyer, sku, 2)
        .await?
        .expect(200, "filling a cart")?;
    bench
        .shop
        .api
        .post("/v1/me/cart/checkout", Some(&buyer), &checkout_body())
        .await?
        .expect(202, "checking out")?;
    sqlx::query_as(query)
        .fetch_optional(&bench.engine.pool)
        .await?
        .context("no OrderPlaced event after a checkout")
}

pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<()> {
    let events = bench.sizes.replay_events;
    let (version, payload, metadata) = real_order_placed(bench).await?;
    anyhow::ensure!(
        payload.pointer("/OrderPlaced/buyer_id").is_some(),
        "an OrderPlaced payload without buyer_id: {payload}"
    );

    let (database, url) = bench.engine.scratch_database("replay").await?;
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(PgConnectOptions::from_str(&url)?.disable_statement_logging())
        .await
        .context("connecting to the replay database")?;
    commerce_store::db::migrate(&pool).await?;

    eprintln!("  inserting {events} OrderPlaced events");
    let start = Instant::now();
    let mut inserted = 0;
    while inserted < events {
        let n = INSERT_BATCH.min(events - inserted);
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             SELECT 'order', gen_random_uuid()::text, 1, 'OrderPlaced', $1, \
                    jsonb_set($2::jsonb, '{OrderPlaced,buyer_id}', to_jsonb(gen_random_uuid()::text)), $3::jsonb \
             FROM generate_series(1, $4)",
        )
        .bind(&version)
        .bind(&payload)
        .bind(&metadata)
        .bind(n as i64)
        .execute(&pool)
        .await
        .context("inserting synthetic events")?;
        inserted += n;
    }
    let insert_seconds = start.elapsed().as_secs_f64();
    pool.execute("VACUUM ANALYZE events")
        .await
        .context("analysing the events")?;
    let mut row = Row::new(
        NAME,
        format!("insert {events} events (SQL, batches)"),
        "event",
    );
    row.rate = Some(events as f64 / insert_seconds);
    bench.report.row(row.note("setup, for scale"));

    let budget = bench.sizes.replay_budget;
    eprintln!("  applying the orders projection from the store (at most {budget:?})");
    let start = Instant::now();
    let replayed = tokio::time::timeout(
        budget,
        commerce_projections::apply_from_store(&pool, &Orders, 0),
    )
    .await;
    let seconds = start.elapsed().as_secs_f64();
    // Dropping the replay mid-batch rolls that batch back: what committed is in rm_orders.
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_orders")
        .fetch_one(&pool)
        .await?;
    let (applied, parked, finished) = match replayed {
        Ok(report) => {
            let report = report?;
            (report.applied, report.parked, true)
        }
        Err(_) => (u64::try_from(orders).unwrap_or(0), 0, false),
    };
    let per_second = applied as f64 / seconds;
    let mut row = Row::new(NAME, format!("orders projection, {events} events"), "event");
    row.rate = Some(per_second);
    let mut note = format!("{seconds:.1} s; target ≥ 100000/s");
    if !finished {
        note.push_str(&format!(
            "; stopped after the {budget:?} budget with {applied} of {events} applied"
        ));
    } else if applied as usize != events || orders as usize != events {
        note.push_str(&format!(
            "; applied {applied} (parked {parked}), rm_orders {orders} (MISMATCH)"
        ));
    }
    bench.report.row(row.note(note));
    bench.report.detail(
        NAME,
        json!({"events": events, "payload_bytes": payload.to_string().len(),
               "insert_seconds": insert_seconds, "replay_seconds": seconds,
               "events_per_second": per_second, "applied": applied, "parked": parked,
               "finished": finished, "budget_seconds": budget.as_secs_f64(),
               "rm_orders": orders}),
    );
    pool.close().await;
    bench.engine.drop_scratch_database(&database).await?;
    Ok(())
}

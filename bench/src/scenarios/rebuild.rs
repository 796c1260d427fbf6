//! Rebuild: events per second and peak memory of an online rebuild
//! (`commerce_projections::rebuild`) of the orders and of the catalog projection, each over a
//! store of `rebuild_events` events of its own types.
//!
//! The events go into a scratch database of their own (migrated like the engine's): orders with
//! their whole happy path (placed, reserved, authorised, confirmed, shipped; an order's five
//! events spread over about two thousand positions, as concurrent checkouts interleave them),
//! and products created then updated three times. The payloads are shaped exactly like the
//! engine's own: a real `OrderPlaced` and `ProductCreated` of this run, the others serialized
//! from the domain's types. The rebuild runs exactly as in the engine (the same runner, batch
//! size and swap); the rate counts from its request to the swap's commit, shadow indexes
//! included. The peak RSS is this process's (the engine under test runs in it), its high-water
//! mark reset just before each rebuild.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use commerce_domain::order::OrderEvent;
use commerce_domain::product::{ProductChanges, ProductEvent};
use commerce_domain::{Currency, Money};
use commerce_projections::read_models;
use commerce_projections::rebuild::{self, RebuildConfig, RebuildState};
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Executor, PgPool};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{memory, Bench};
use crate::client::checkout_body;
use crate::report::Row;

const NAME: &str = "rebuild";
/// Aggregates per inserting statement (and transaction).
const INSERT_CHUNK: i64 = 10_000;
/// The target of the operators' issue.
const TARGET: f64 = 100_000.0;
const RSS_LIMIT_MIB: f64 = 256.0;

/// The newest event of a type in this run's engine: `(event_version, payload, metadata)`.
async fn newest(pool: &PgPool, event_type: &str) -> anyhow::Result<Option<(String, Value, Value)>> {
    Ok(sqlx::query_as(
        "SELECT event_version, payload, metadata FROM events WHERE event_type = $1 \
         ORDER BY position DESC LIMIT 1",
    )
    .bind(event_type)
    .fetch_optional(pool)
    .await?)
}

/// A real `OrderPlaced` of this run, checking one out first if there is none yet.
async fn real_order_placed(bench: &Bench<'_>) -> anyhow::Result<(String, Value, Value)> {
    if let Some(found) = newest(&bench.engine.pool, "OrderPlaced").await? {
        return Ok(found);
    }
    let buyer = bench.shop.buyer().await?;
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
    newest(&bench.engine.pool, "OrderPlaced")
        .await?
        .context("no OrderPlaced event after a checkout")
}

/// One kind of aggregate to fill the store with: its events in order, as
/// `(event_type, event_version, payload)`; the first one's payload gets a fresh `id_pointer`.
struct Lifecycle {
    aggregate_type: &'static str,
    events: Vec<(String, String, Value)>,
    id_pointer: &'static str,
}

fn domain_event<E: serde::Serialize + cqrs_es::DomainEvent>(
    event: E,
) -> anyhow::Result<(String, String, Value)> {
    Ok((
        event.event_type(),
        event.event_version(),
        serde_json::to_value(&event)?,
    ))
}

async fn order_lifecycle(bench: &Bench<'_>) -> anyhow::Result<(Lifecycle, Value)> {
    let (version, placed, metadata) = real_order_placed(bench).await?;
    let mut events = vec![("OrderPlaced".to_owned(), version, placed)];
    for event in [
        OrderEvent::InventoryReserved,
        OrderEvent::PaymentAuthorized,
        OrderEvent::OrderConfirmed,
        OrderEvent::OrderShipped {
            carrier: "DHL".into(),
            tracking_number: "JD014600003828".into(),
        },
    ] {
        events.push(domain_event(event)?);
    }
    Ok((
        Lifecycle {
            aggregate_type: "order",
            events,
            id_pointer: "{OrderPlaced,buyer_id}",
        },
        metadata,
    ))
}

async fn product_lifecycle(bench: &Bench<'_>) -> anyhow::Result<Lifecycle> {
    let (version, created, _) = newest(&bench.engine.pool, "ProductCreated")
        .await?
        .context("the shop has no product")?;
    let mut events = vec![("ProductCreated".to_owned(), version, created)];
    for n in 1..=3 {
        events.push(domain_event(ProductEvent::ProductUpdated {
            changes: ProductChanges {
                name: Some(format!("Renamed product {n}")),
                price: Some(Money::new(1000 + n, Currency::parse("EUR")?)),
                ..ProductChanges::default()
            },
        })?);
    }
    Ok(Lifecycle {
        aggregate_type: "product",
        events,
        id_pointer: "{ProductCreated,seller_id}",
    })
}

/// Inserts `total` events: whole lifecycles of fresh aggregates, server-side, each statement
/// interleaving the lifecycles of its chunk like concurrent commands would.
async fn fill(
    pool: &PgPool,
    lifecycle: &Lifecycle,
    metadata: &Value,
    total: usize,
) -> anyhow::Result<()> {
    let per_aggregate = lifecycle.events.len() as i64;
    let aggregates = (total as u64).div_ceil(per_aggregate as u64) as i64;
    let (types, versions, payloads): (Vec<String>, Vec<String>, Vec<Value>) =
        lifecycle.events.iter().cloned().fold(
            (vec![], vec![], vec![]),
            |(mut t, mut v, mut p), (a, b, c)| {
                t.push(a);
                v.push(b);
                p.push(c);
                (t, v, p)
            },
        );
    let mut done = 0;
    while done < aggregates {
        let n = INSERT_CHUNK.min(aggregates - done);
        // An aggregate's k-th event sits about 400 × k positions after its first.
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             SELECT $1, a.id, s.seq, s.t, s.v, \
                    CASE WHEN s.seq = 1 THEN jsonb_set(s.p, $6::text[], to_jsonb(gen_random_uuid()::text)) ELSE s.p END, \
                    $7::jsonb \
             FROM (SELECT gen_random_uuid()::text AS id, n FROM generate_series(1, $2) n) a \
             CROSS JOIN UNNEST($3::text[], $4::text[], $5::jsonb[]) WITH ORDINALITY AS s(t, v, p, seq) \
             ORDER BY a.n + s.seq * 400, s.seq",
        )
        .bind(lifecycle.aggregate_type)
        .bind(n)
        .bind(&types)
        .bind(&versions)
        .bind(&payloads)
        .bind(lifecycle.id_pointer)
        .bind(metadata)
        .execute(pool)
        .await
        .context("inserting synthetic events")?;
        done += n;
    }
    Ok(())
}

pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<()> {
    let events = bench.sizes.rebuild_events;
    let (orders, metadata) = order_lifecycle(bench).await?;
    let products = product_lifecycle(bench).await?;

    let (database, url) = bench.engine.scratch_database("rebuild").await?;
    let pool = PgPoolOptions::new()
        .max_connections(6)
        .connect_with(PgConnectOptions::from_str(&url)?.disable_statement_logging())
        .await
        .context("connecting to the rebuild database")?;
    commerce_store::db::migrate(&pool).await?;

    eprintln!("  inserting {events} order events and {events} product events");
    let start = Instant::now();
    fill(&pool, &orders, &metadata, events).await?;
    fill(&pool, &products, &metadata, events).await?;
    let insert_seconds = start.elapsed().as_secs_f64();
    pool.execute("VACUUM ANALYZE events")
        .await
        .context("analysing the events")?;
    let mut row = Row::new(NAME, format!("insert {} events (SQL)", 2 * events), "event");
    row.rate = Some(2.0 * events as f64 / insert_seconds);
    bench.report.row(row.note("setup, for scale"));

    let cancel = CancellationToken::new();
    // The engine's setting, as `commerce serve` reads it.
    let config = match std::env::var("COMMERCE_REBUILD_BATCH") {
        Ok(batch) => RebuildConfig {
            batch_size: batch.parse().context("COMMERCE_REBUILD_BATCH")?,
            ..RebuildConfig::default()
        },
        Err(_) => RebuildConfig::default(),
    };
    eprintln!("  {} events a batch", config.batch_size);
    let runner = tokio::spawn(rebuild::run_rebuilds(
        pool.clone(),
        read_models::all(),
        config,
        cancel.clone(),
    ));
    let mut details = Vec::new();
    for (projection, table) in [("orders", "rm_orders"), ("catalog", "rm_products")] {
        let budget = bench.sizes.rebuild_budget;
        eprintln!("  rebuilding {projection} (at most {budget:?})");
        memory::reset_peak_rss();
        let (rss_before, _) = memory::rss_mib();
        let started = Instant::now();
        let request = rebuild::start(&pool, &read_models::all(), projection)
            .await
            .map_err(anyhow::Error::from)?;
        let progress = loop {
            let progress = rebuild::progress(&pool, request.rebuild_id)
                .await?
                .context("the rebuild vanished")?;
            if progress.state.is_final() {
                break progress;
            }
            if started.elapsed() > budget {
                rebuild::cancel(&pool, request.rebuild_id)
                    .await
                    .map_err(anyhow::Error::from)?;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let seconds = started.elapsed().as_secs_f64();
        let (_, rss_peak) = memory::rss_mib();
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&pool)
            .await?;
        let per_second = progress.events_done as f64 / seconds;
        let mut row = Row::new(NAME, format!("{projection}, {events} events"), "event");
        row.rate = Some(per_second);
        let mut note = format!(
            "{seconds:.1} s, {:.2}× the {TARGET} target; peak RSS {rss_peak:.0} MiB ({:.2}× the {RSS_LIMIT_MIB} MiB limit), {rss_before:.0} before",
            per_second / TARGET,
            rss_peak / RSS_LIMIT_MIB
        );
        if progress.state != RebuildState::Completed {
            note.push_str(&format!(
                "; ended {:?} after {} events: {}",
                progress.state,
                progress.events_done,
                progress.error.as_deref().unwrap_or("over budget")
            ));
        }
        bench.report.row(row.note(note));
        details.push(json!({"projection": projection, "events": events,
            "seconds": seconds, "events_per_second": per_second,
            "runner_events_per_second": progress.events_per_second,
            "state": format!("{:?}", progress.state), "events_done": progress.events_done,
            "events_parked": progress.events_parked, "rows": rows,
            "rss_before_mib": rss_before, "rss_peak_mib": rss_peak}));
    }
    cancel.cancel();
    runner.await.context("the rebuild runner panicked")??;
    bench.report.detail(
        NAME,
        json!({"insert_seconds": insert_seconds, "rebuilds": details}),
    );
    pool.close().await;
    bench.engine.drop_scratch_database(&database).await?;
    Ok(())
}

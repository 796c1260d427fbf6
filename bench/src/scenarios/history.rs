//! History: command latency on one aggregate as its stream grows. For each size, an inventory
//! SKU gets that many `Restocked` events inserted directly with SQL (as a long life would have
//! left them), the read side is given time to take them in (which measures the relay and the
//! projections on a backlog), then restocks through the API one at a time: the first loads the
//! whole stream (no snapshot yet), the next ones come from the cache, a snapshot lands with the
//! engine's own writes; after the warm-up, p50/p99 over the measured restocks.

use std::time::Duration;

use anyhow::Context;
use reqwest::Method;
use serde::Serialize;
use serde_json::json;
use tokio::time::Instant;

use super::{caught_up, Bench, CaughtUp};
use crate::client::Api;
use crate::report::{ratio, Row};
use crate::stats::{Recorder, Summary};

const NAME: &str = "history";
/// Events per inserting statement.
const INSERT_BATCH: usize = 50_000;

#[derive(Serialize)]
struct Size {
    events: usize,
    insert_seconds: f64,
    catch_up: Option<CaughtUp>,
    /// The first command: loads the stream from the store.
    first_ms: f64,
    /// The snapshot the engine holds after the run, if any: its sequence.
    snapshot_sequence: Option<i64>,
    summary: Summary,
}

async fn insert_history(bench: &Bench<'_>, sku: &str, events: usize) -> anyhow::Result<()> {
    let mut from = 1;
    while from <= events {
        let to = (from + INSERT_BATCH - 1).min(events);
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             SELECT 'inventory', $1, g, 'Restocked', '1.0', \
                    jsonb_build_object('Restocked', jsonb_build_object('quantity', 1, \
                        'levels', jsonb_build_object('on_hand', g, 'reserved', 0))), '{}'::jsonb \
             FROM generate_series($2::bigint, $3::bigint) AS g",
        )
        .bind(sku)
        .bind(from as i64)
        .bind(to as i64)
        .execute(&bench.engine.pool)
        .await
        .context("inserting a history")?;
        from = to + 1;
    }
    Ok(())
}

pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<()> {
    let sizes = bench.sizes.clone();
    let api = bench.shop.api.clone();
    let jetstream = bench.report.limits.jetstream_acks_per_second;
    let mut results: Vec<Size> = Vec::new();
    for &events in &sizes.histories {
        let sku = format!("HIST-{events}");
        bench.shop.product(&sku, 1000, "history", 0).await?;
        eprintln!("  {sku}: inserting {events} events");
        let start = Instant::now();
        insert_history(bench, &sku, events).await?;
        let insert_seconds = start.elapsed().as_secs_f64();
        let catch_up = match caught_up(bench.engine, Duration::from_secs(600)).await {
            Ok(catch_up) => Some(catch_up),
            Err(error) => {
                eprintln!("    {error:#}");
                None
            }
        };
        if let (Some(catch_up), true) = (catch_up, events >= 10_000) {
            let rate = events as f64 / catch_up.relay.as_secs_f64().max(1e-6);
            let mut relay = Row::new(NAME, format!("relay backlog of {events}"), "event");
            relay.rate = Some(rate);
            bench.report.row(
                relay
                    .ratio(ratio(rate, jetstream), "jetstream")
                    .note("published + checkpointed"),
            );
            let mut projections =
                Row::new(NAME, format!("projections on backlog of {events}"), "event");
            projections.rate = Some(events as f64 / catch_up.projections.as_secs_f64().max(1e-6));
            bench.report.row(
                projections.note("until every watermark passed the last (inventory applies them)"),
            );
        }

        let restock = || {
            api.request(
                Method::POST,
                &format!("/v1/inventory/{sku}/restock"),
                Some(&bench.shop.seller),
            )
            .json(&json!({"quantity": 1}))
        };
        let started = Instant::now();
        Api::send(restock())
            .await?
            .expect(200, "the first restock")?;
        let first_ms = started.elapsed().as_secs_f64() * 1000.0;
        for _ in 1..sizes.history_warmup {
            Api::send(restock())
                .await?
                .expect(200, "a warm-up restock")?;
        }
        let recorder = Recorder::new();
        let start = Instant::now();
        for _ in 0..sizes.history_samples {
            let started = Instant::now();
            match Api::status(restock()).await {
                Ok(200) => recorder.ok(started.elapsed()),
                Ok(status) => recorder.status(status),
                Err(error) => recorder.error(&error),
            }
        }
        let summary = recorder.summary(start.elapsed());
        let snapshot_sequence: Option<i64> = sqlx::query_scalar(
            "SELECT last_sequence FROM snapshots WHERE aggregate_type = 'inventory' AND aggregate_id = $1",
        )
        .bind(&sku)
        .fetch_optional(&bench.engine.pool)
        .await?;
        results.push(Size {
            events,
            insert_seconds,
            catch_up,
            first_ms,
            snapshot_sequence,
            summary,
        });
    }
    let smallest = results
        .iter()
        .min_by_key(|s| s.events)
        .and_then(|s| s.summary.p50_ms);
    let smallest_p99 = results
        .iter()
        .min_by_key(|s| s.events)
        .and_then(|s| s.summary.p99_ms);
    for size in &results {
        let note = format!(
            "first (cold, full replay) {:.1} ms; snapshot at {}",
            size.first_ms,
            size.snapshot_sequence
                .map_or("none".to_owned(), |s| s.to_string())
        );
        bench.report.row(
            Row::from_summary(
                NAME,
                format!("restock, {} events, 1 conn", size.events),
                "cmd",
                &size.summary,
            )
            .ratio(
                size.summary.p50_ms.and_then(|p| ratio(p, smallest)),
                "p50 @ min",
            )
            .note(note),
        );
    }
    if let (Some(largest), Some(least)) = (
        results.iter().max_by_key(|s| s.events),
        results.iter().min_by_key(|s| s.events),
    ) {
        let mut row = Row::new(
            NAME,
            format!("p99 {} vs {} events", largest.events, least.events),
            "ratio",
        );
        row.p99_ms = largest.summary.p99_ms;
        bench.report.row(
            row.ratio(
                largest.summary.p99_ms.and_then(|p| ratio(p, smallest_p99)),
                "p99 @ min",
            )
            .note("target: within 1.2"),
        );
    }
    bench.report.detail(NAME, json!({"sizes": results}));
    Ok(())
}

//! The scenarios, one a file, in the order a run measures them. Each adds rows to the report
//! and its details to the JSON.

pub mod checkout;
pub mod commands;
pub mod history;
pub mod hot_sku;
pub mod lag;
pub mod limits;
pub mod memory;
pub mod nats_replicas;
pub mod rebuild;
pub mod scale_out;

use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;

use crate::client::Shop;
use crate::engine::Engine;
use crate::report::Report;

/// What `--scenario` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Scenario {
    /// Raw Postgres commit rate and JetStream publish-with-ack throughput.
    Limits,
    /// Single-event cart commands at 1, 8, 64 connections, then open-loop at half the best.
    Commands,
    /// Restocks of one SKU from 64 connections.
    HotSku,
    /// Checkout → confirmed through the saga, at rising rates, alone and in a shopping mix.
    Checkout,
    /// Commit → visible in the read model, at half the best command rate.
    Lag,
    /// Online rebuilds of the orders and the catalog projections over a large store.
    Rebuild,
    /// Command latency on one aggregate with a short and a long history.
    History,
    /// JetStream publish rate to an R1 vs an R3 stream on a 3-node NATS cluster the scenario
    /// starts on loopback (`scripts/nats-cluster.sh`; needs `nats-server`), about 20 s quick.
    NatsReplicas,
    /// 1, then 2 separate engine processes of each role (the release `commerce` binary): cart
    /// commands and checkouts, with each process's CPU.
    ScaleOut,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Limits => "limits",
            Scenario::Commands => "commands",
            Scenario::HotSku => "hot-sku",
            Scenario::Checkout => "checkout",
            Scenario::Lag => "lag",
            Scenario::Rebuild => "rebuild",
            Scenario::History => "history",
            Scenario::NatsReplicas => "nats-replicas",
            Scenario::ScaleOut => "scale-out",
        }
    }

    pub const ALL: [Scenario; 9] = [
        Scenario::Limits,
        Scenario::Commands,
        Scenario::HotSku,
        Scenario::Checkout,
        Scenario::Lag,
        Scenario::Rebuild,
        Scenario::History,
        Scenario::NatsReplicas,
        Scenario::ScaleOut,
    ];
}

/// How big each scenario is: `--quick` for a run of a few minutes, the full one for the figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sizes {
    /// Each closed- or open-loop measurement.
    pub run: Duration,
    /// Raw Postgres commits, per connection count.
    pub pg_run: Duration,
    pub pg_connections: Vec<usize>,
    pub jetstream_messages: usize,
    /// Publishes awaiting their ack at once.
    pub jetstream_window: usize,
    /// Carts the command scenario spreads over.
    pub buyers: usize,
    pub command_connections: Vec<usize>,
    pub hot_connections: usize,
    /// Each rate of the checkout scenario.
    pub checkout_step: Duration,
    pub checkout_rates: Vec<f64>,
    /// Checkout rates with the shopping mix around each checkout.
    pub mix_rates: Vec<f64>,
    pub lag_run: Duration,
    pub rebuild_events: usize,
    /// The longest one rebuild may take; a slower one is cancelled and measured on what it did.
    pub rebuild_budget: Duration,
    pub histories: Vec<usize>,
    pub history_warmup: usize,
    pub history_samples: usize,
}

impl Sizes {
    pub fn new(quick: bool) -> Self {
        if quick {
            Self {
                run: Duration::from_secs(5),
                pg_run: Duration::from_secs(4),
                pg_connections: vec![1, 8],
                jetstream_messages: 20_000,
                jetstream_window: 256,
                buyers: 1_000,
                command_connections: vec![1, 8, 64],
                hot_connections: 64,
                checkout_step: Duration::from_secs(5),
                checkout_rates: vec![25.0, 50.0, 100.0, 200.0, 400.0],
                mix_rates: vec![10.0, 25.0, 50.0, 100.0],
                lag_run: Duration::from_secs(6),
                rebuild_events: 200_000,
                rebuild_budget: Duration::from_secs(60),
                histories: vec![10, 1_000, 10_000],
                history_warmup: 200,
                history_samples: 500,
            }
        } else {
            Self {
                run: Duration::from_secs(15),
                pg_run: Duration::from_secs(10),
                pg_connections: vec![1, 8],
                jetstream_messages: 100_000,
                jetstream_window: 256,
                buyers: 10_000,
                command_connections: vec![1, 8, 64],
                hot_connections: 64,
                checkout_step: Duration::from_secs(15),
                checkout_rates: vec![25.0, 50.0, 100.0, 200.0, 400.0, 800.0],
                mix_rates: vec![10.0, 25.0, 50.0, 100.0, 200.0],
                lag_run: Duration::from_secs(20),
                rebuild_events: 1_000_000,
                rebuild_budget: Duration::from_secs(180),
                histories: vec![10, 1_000, 100_000],
                history_warmup: 200,
                history_samples: 500,
            }
        }
    }
}

/// Everything a scenario works with.
pub struct Bench<'a> {
    pub engine: &'a Engine,
    pub shop: Shop,
    pub sizes: Sizes,
    pub report: &'a mut Report,
    /// The best closed-loop command rate measured so far (for the lag scenario).
    pub command_max: Option<f64>,
}

/// How long the read side took to take in everything committed so far.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct CaughtUp {
    /// Until the relay had published and checkpointed the last event.
    pub relay: Duration,
    /// Until every projection's watermark had passed it.
    pub projections: Duration,
}

/// Waits until the relay and every projection have passed the last committed event.
pub async fn caught_up(engine: &Engine, timeout: Duration) -> anyhow::Result<CaughtUp> {
    caught_up_on(&engine.pool, &engine.namespace, timeout).await
}

/// As [`caught_up`], for the engine whose database `pool` is on and whose namespace is
/// `namespace` (one run as separate processes).
pub async fn caught_up_on(
    pool: &sqlx::PgPool,
    namespace: &str,
    timeout: Duration,
) -> anyhow::Result<CaughtUp> {
    let start = Instant::now();
    let last: Option<(i64,)> = sqlx::query_as("SELECT max(position) FROM events")
        .fetch_optional(pool)
        .await
        .context("reading the last position")?;
    let Some(position) = last.map(|(p,)| p) else {
        return Ok(CaughtUp {
            relay: Duration::ZERO,
            projections: Duration::ZERO,
        });
    };
    let mut relay = None;
    loop {
        let (relay_done, applied, projections): (Option<bool>, i64, i64) = sqlx::query_as(
            "WITH e AS (SELECT tx_id FROM events WHERE position = $2) \
             SELECT (SELECT r.horizon > e.tx_id FROM relay_checkpoint r, e WHERE r.namespace = $1), \
                    (SELECT count(*) FROM projection_positions p, e WHERE p.horizon > e.tx_id), \
                    (SELECT count(*) FROM projection_positions)",
        )
        .bind(namespace)
        .bind(position)
        .fetch_one(pool)
        .await
        .context("comparing the read side's progress with the last event")?;
        if relay.is_none() && relay_done == Some(true) {
            relay = Some(start.elapsed());
        }
        if let Some(relay) = relay {
            if projections > 0 && applied == projections {
                return Ok(CaughtUp {
                    relay,
                    projections: start.elapsed(),
                });
            }
        }
        anyhow::ensure!(
            start.elapsed() < timeout,
            "the read side did not catch up with position {position} within {timeout:?} \
             (relay done: {relay_done:?}, projections {applied}/{projections})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Where the relay and each projection stand against the last event: for the report, when a
/// scenario leaves the read side behind.
pub async fn read_side(engine: &Engine) -> anyhow::Result<serde_json::Value> {
    let (last, published): (Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT (SELECT max(position) FROM events), \
                (SELECT published_position FROM relay_checkpoint WHERE namespace = $1)",
    )
    .bind(&engine.namespace)
    .fetch_one(&engine.pool)
    .await
    .context("reading the relay's progress")?;
    let projections: Vec<(String, i64, i64, f64, String)> = sqlx::query_as(
        "SELECT name, position, pending, lag_seconds, state FROM projection_positions ORDER BY name",
    )
    .fetch_all(&engine.pool)
    .await
    .context("reading the projections' progress")?;
    let namespace = commerce_projections::Namespace::parse(&engine.namespace)?;
    let stream = engine
        .jetstream
        .get_stream(namespace.stream_name())
        .await
        .ok();
    let mut rows = Vec::new();
    for (name, position, pending, lag, state) in projections {
        let consumer = match &stream {
            Some(stream) => stream
                .consumer_info(namespace.consumer_name(&name))
                .await
                .ok()
                .map(|info| {
                    serde_json::json!({"delivered": info.delivered.stream_sequence,
                        "ack_floor": info.ack_floor.stream_sequence,
                        "num_ack_pending": info.num_ack_pending,
                        "num_redelivered": info.num_redelivered,
                        "num_pending": info.num_pending})
                }),
            None => None,
        };
        rows.push(
            serde_json::json!({"name": name, "position": position, "pending": pending,
            "lag_seconds": lag, "state": state, "consumer": consumer}),
        );
    }
    Ok(serde_json::json!({
        "last_position": last,
        "relay_published_position": published,
        "projections": rows,
    }))
}

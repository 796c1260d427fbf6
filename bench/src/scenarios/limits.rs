//! The machine's limits, measured in the same run as everything else:
//! - the raw Postgres commit rate: one event-sized row per transaction, through sqlx, into a
//!   scratch copy of the `events` table (same columns and indexes, no triggers), from N
//!   connections each committing back to back;
//! - raw JetStream publish-with-ack throughput: event-sized messages with a `Nats-Msg-Id`, to a
//!   scratch stream configured like the engine's (file storage, same duplicate window),
//!   pipelined; and the latency of one publish acknowledged at a time.

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context;
use async_nats::jetstream::stream;
use bytes::Bytes;
use serde::Serialize;
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use super::Bench;
use crate::report::Row;
use crate::stats::{Recorder, Summary};

const NAME: &str = "limits";

/// A cart event's payload and metadata, as the engine writes them (sizes matter, not values).
fn event_payload() -> (serde_json::Value, serde_json::Value) {
    let payload = json!({"QuantitySet": {"sku": "BENCH-0001", "quantity": 2,
        "item": {"sku": "BENCH-0001", "product_id": Uuid::new_v4(), "seller_id": Uuid::new_v4(),
                 "unit_price": {"amount": 1999, "currency": "EUR"}, "listed": true}}});
    let metadata = json!({"correlation_id": Uuid::now_v7(), "causation_id": Uuid::now_v7(),
        "actor": Uuid::new_v4(), "idempotency_key": null});
    (payload, metadata)
}

#[derive(Serialize)]
struct PgRun {
    connections: usize,
    #[serde(flatten)]
    summary: Summary,
}

#[derive(Serialize)]
pub(super) struct JetStreamRun {
    pub(super) messages: usize,
    pub(super) in_flight: usize,
    pub(super) seconds: f64,
    pub(super) acks_per_second: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) latency: Option<Summary>,
}

pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<()> {
    let pg = postgres(bench).await?;
    let jetstream = jetstream(bench).await?;
    bench
        .report
        .detail(NAME, json!({"postgres": pg, "jetstream": jetstream}));
    Ok(())
}

/// Only the Postgres commit rate (when a scenario needs it and `limits` was not selected).
pub async fn postgres_only(bench: &mut Bench<'_>) -> anyhow::Result<()> {
    let pg = postgres(bench).await?;
    bench.report.detail(NAME, json!({"postgres": pg}));
    Ok(())
}

async fn postgres(bench: &mut Bench<'_>) -> anyhow::Result<Vec<PgRun>> {
    let pool = &bench.engine.pool;
    pool.execute(
        "CREATE TABLE bench_raw_commits ( \
            aggregate_type text NOT NULL, aggregate_id text NOT NULL, sequence bigint NOT NULL, \
            event_type text NOT NULL, event_version text NOT NULL, payload jsonb NOT NULL, \
            metadata jsonb NOT NULL, position bigint GENERATED ALWAYS AS IDENTITY, \
            tx_id xid8 NOT NULL DEFAULT pg_current_xact_id(), \
            recorded_at timestamptz NOT NULL DEFAULT now(), \
            PRIMARY KEY (aggregate_type, aggregate_id, sequence)); \
         CREATE INDEX ON bench_raw_commits (tx_id, position); \
         CREATE INDEX ON bench_raw_commits (position);",
    )
    .await
    .context("creating the scratch table")?;
    let url = bench.engine.database_url.clone();
    let mut runs = Vec::new();
    for &connections in &bench.sizes.pg_connections.clone() {
        eprintln!("  postgres: one-row commits from {connections} connection(s)");
        let summary = commit_loop(&url, connections, bench.sizes.pg_run).await?;
        let limits = &mut bench.report.limits;
        limits.pg_commits_per_second = Some(
            limits
                .pg_commits_per_second
                .unwrap_or(0.0)
                .max(summary.per_second),
        );
        if connections == 1 {
            limits.pg_commits_per_second_1 = Some(summary.per_second);
        }
        bench.report.row(
            Row::from_summary(
                NAME,
                format!("postgres commit, {connections} conn"),
                "commit",
                &summary,
            )
            .note("1 event row per transaction (sqlx)"),
        );
        runs.push(PgRun {
            connections,
            summary,
        });
    }
    bench
        .engine
        .pool
        .execute("DROP TABLE bench_raw_commits")
        .await
        .context("dropping the scratch table")?;
    Ok(runs)
}

/// `connections` connections each inserting one row per transaction for `duration`.
async fn commit_loop(
    url: &str,
    connections: usize,
    duration: std::time::Duration,
) -> anyhow::Result<Summary> {
    let options = PgConnectOptions::from_str(url)?.disable_statement_logging();
    let recorder = Recorder::new();
    let mut workers = JoinSet::new();
    let mut opened = Vec::with_capacity(connections);
    for _ in 0..connections {
        opened.push(
            options
                .connect()
                .await
                .context("connecting for the commit loop")?,
        );
    }
    let (payload, metadata) = event_payload();
    let (payload, metadata) = (Arc::new(payload), Arc::new(metadata));
    let start = Instant::now();
    let deadline = start + duration;
    for mut connection in opened {
        let (recorder, payload, metadata) = (recorder.clone(), payload.clone(), metadata.clone());
        workers.spawn(async move {
            while Instant::now() < deadline {
                let started = Instant::now();
                let result = sqlx::query(
                    "INSERT INTO bench_raw_commits (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
                     VALUES ('cart', $1, 1, 'QuantitySet', '1.0', $2, $3)",
                )
                .bind(Uuid::new_v4().to_string())
                .bind(&*payload)
                .bind(&*metadata)
                .execute(&mut connection)
                .await;
                match result {
                    Ok(_) => recorder.ok(started.elapsed()),
                    Err(error) => recorder.error(&error.into()),
                }
            }
            let _ = connection.close().await;
        });
    }
    while workers.join_next().await.is_some() {}
    Ok(recorder.summary(start.elapsed()))
}

async fn jetstream(bench: &mut Bench<'_>) -> anyhow::Result<Vec<JetStreamRun>> {
    let engine = &bench.engine;
    let name = format!("{}_BENCH_RAW", engine.namespace.to_ascii_uppercase());
    let subject_prefix = format!("{}.bench_raw", engine.namespace);
    engine.scratch_stream(&name);
    engine
        .jetstream
        .create_stream(scratch_stream_config(&name, &subject_prefix, 1))
        .await
        .context("creating the scratch stream")?;
    let payload = publish_payload()?;
    let mut runs = Vec::new();

    let messages = bench.sizes.jetstream_messages;
    let window = bench.sizes.jetstream_window;
    eprintln!("  jetstream: {messages} publishes, {window} awaiting their ack at once");
    let pipelined = publish_pipelined(
        &engine.jetstream,
        &subject_prefix,
        messages,
        window,
        &payload,
    )
    .await?;
    let acks_per_second = pipelined.acks_per_second;
    bench.report.limits.jetstream_acks_per_second = Some(acks_per_second);
    bench.report.row({
        let mut row = Row::new(
            NAME,
            format!("jetstream publish+ack, {window} in flight"),
            "msg",
        );
        row.rate = Some(acks_per_second);
        row.note(format!(
            "{messages} msgs of {} B, file storage",
            payload.len()
        ))
    });
    runs.push(pipelined);

    let one_at_a_time = one_at_a_time_count(messages);
    let single =
        publish_one_at_a_time(&engine.jetstream, &subject_prefix, one_at_a_time, &payload).await?;
    if let Some(summary) = &single.latency {
        bench.report.row(
            Row::from_summary(NAME, "jetstream publish+ack, 1 in flight", "msg", summary)
                .note(format!("{one_at_a_time} msgs")),
        );
    }
    runs.push(single);

    engine.drop_scratch_stream(&name).await?;
    Ok(runs)
}

/// A scratch stream configured like the engine's (file storage, the same duplicate window), on
/// `replicas` servers.
pub(super) fn scratch_stream_config(
    name: &str,
    subject_prefix: &str,
    replicas: usize,
) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        subjects: vec![format!("{subject_prefix}.>")],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        duplicate_window: commerce_projections::stream::DUPLICATE_WINDOW,
        num_replicas: replicas,
        ..Default::default()
    }
}

/// An event-sized message, as the relay publishes one.
pub(super) fn publish_payload() -> anyhow::Result<Bytes> {
    let (payload, _) = event_payload();
    Ok(Bytes::from(serde_json::to_vec(&payload)?))
}

/// How many publishes the one-at-a-time measurement makes next to `messages` pipelined ones.
pub(super) fn one_at_a_time_count(messages: usize) -> usize {
    (messages / 10).clamp(500, 5_000)
}

/// `messages` publishes to `subject_prefix.>`, `window` of them awaiting their ack at once.
pub(super) async fn publish_pipelined(
    jetstream: &async_nats::jetstream::Context,
    subject_prefix: &str,
    messages: usize,
    window: usize,
    payload: &Bytes,
) -> anyhow::Result<JetStreamRun> {
    let start = Instant::now();
    let mut pending = VecDeque::with_capacity(window);
    for i in 0..messages {
        if pending.len() >= window {
            if let Some(ack) = pending.pop_front() {
                let _: async_nats::jetstream::publish::PublishAck = ack_of(ack).await?;
            }
        }
        pending.push_back(publish(jetstream, subject_prefix, "p", i, payload.clone()).await?);
    }
    for ack in pending {
        ack_of(ack).await?;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(JetStreamRun {
        messages,
        in_flight: window,
        seconds,
        acks_per_second: messages as f64 / seconds,
        latency: None,
    })
}

/// `messages` publishes, each acknowledged before the next is sent: the latency of one.
pub(super) async fn publish_one_at_a_time(
    jetstream: &async_nats::jetstream::Context,
    subject_prefix: &str,
    messages: usize,
    payload: &Bytes,
) -> anyhow::Result<JetStreamRun> {
    let recorder = Recorder::new();
    let start = Instant::now();
    for i in 0..messages {
        let started = Instant::now();
        let ack = publish(jetstream, subject_prefix, "s", i, payload.clone()).await?;
        ack_of(ack).await?;
        recorder.ok(started.elapsed());
    }
    let summary = recorder.summary(start.elapsed());
    Ok(JetStreamRun {
        messages,
        in_flight: 1,
        seconds: summary.seconds,
        acks_per_second: summary.per_second,
        latency: Some(summary),
    })
}

async fn publish(
    jetstream: &async_nats::jetstream::Context,
    prefix: &str,
    run: &str,
    i: usize,
    payload: Bytes,
) -> anyhow::Result<async_nats::jetstream::context::PublishAckFuture> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", format!("{run}-{i}").as_str());
    jetstream
        .publish_with_headers(format!("{prefix}.cart.{}", i % 10_000), headers, payload)
        .await
        .context("publishing to the scratch stream")
}

async fn ack_of(
    ack: async_nats::jetstream::context::PublishAckFuture,
) -> anyhow::Result<async_nats::jetstream::publish::PublishAck> {
    ack.await.context("waiting for a JetStream ack")
}

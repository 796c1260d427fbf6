//! A projection's watermark: the relay horizon it has confirmed (see [`crate::runtime`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, consumer::PullConsumer};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Partition;
use crate::relay::checkpoint::{self, Checkpoint, CHECKPOINT_CHANNEL};
use crate::Namespace;

/// How often the relay's checkpoint is read when no notification arrives.
const RELAY_POLL: Duration = Duration::from_secs(1);
/// The least time between two consumer-info requests of one worker (the server may take tens of
/// milliseconds to count a consumer's pending messages).
const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(25);
/// Relay checkpoints kept waiting for the ack floor to pass them.
const MAX_CANDIDATES: usize = 64;

/// Keeps `marks` at the relay's latest checkpoint, woken by `NOTIFY relay_checkpoint`, until
/// `cancel` is cancelled. Failures are logged and retried.
pub(super) async fn watch_relay(
    pool: PgPool,
    namespace: Namespace,
    marks: watch::Sender<Checkpoint>,
    cancel: CancellationToken,
) {
    loop {
        match follow_relay(&pool, &namespace, &marks, &cancel).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "following the relay's checkpoint failed; retrying"
                );
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(RELAY_POLL) => {}
                }
            }
        }
    }
}

async fn follow_relay(
    pool: &PgPool,
    namespace: &Namespace,
    marks: &watch::Sender<Checkpoint>,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let mut listener = PgListener::connect_with(pool)
        .await
        .context("connecting the checkpoint listener")?;
    listener
        .listen(CHECKPOINT_CHANNEL)
        .await
        .context("listening for relay checkpoints")?;
    loop {
        let latest = checkpoint::load(pool, namespace).await?;
        marks.send_if_modified(|mark| {
            let changed = *mark != latest;
            *mark = latest;
            changed
        });
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            notification = listener.recv() => {
                notification.context("waiting for relay checkpoints")?;
                while listener.next_buffered().is_some() {}
            }
            () = tokio::time::sleep(RELAY_POLL) => {}
        }
    }
}

/// The stream a worker's consumer reads.
pub(super) struct StreamOf {
    pub jetstream: jetstream::Context,
    pub namespace: Namespace,
}

/// What a worker knows about its own watermark.
pub(super) struct HorizonTracker {
    projection: &'static str,
    /// The share of the projection the horizon speaks for: a partition's horizon is its own,
    /// and the projection's moves to the lowest of its partitions'.
    partition: Partition,
    /// The stream the projection's consumer reads.
    stream: StreamOf,
    /// Every followed event with `tx_id < horizon` is applied; stored in `projection_positions`.
    horizon: i64,
    /// Every followed message at or below this stream sequence is applied.
    confirmed_sequence: u64,
    /// Relay checkpoints above `confirmed_sequence`, by increasing stream sequence.
    candidates: VecDeque<Checkpoint>,
    /// The stream sequence and stream identity of the last relay checkpoint seen: another
    /// identity (or a sequence going backwards) means the stream was recreated, and sequences
    /// confirmed in the old stream say nothing about the new one.
    last_relay_sequence: u64,
    last_relay_stream: Option<DateTime<Utc>>,
    last_check: Option<Instant>,
}

impl HorizonTracker {
    /// Starts from the stored horizon.
    pub(super) async fn load(
        pool: &PgPool,
        projection: &'static str,
        partition: Partition,
        stream: StreamOf,
    ) -> anyhow::Result<Self> {
        let horizon: Option<i64> = if partition.is_whole() {
            sqlx::query_scalar(
                "SELECT horizon::text::bigint FROM projection_positions WHERE name = $1",
            )
            .bind(projection)
            .fetch_optional(pool)
            .await
        } else {
            sqlx::query_scalar(
                "SELECT horizon::text::bigint FROM projection_partitions \
                 WHERE projection = $1 AND partitions = $2 AND partition = $3",
            )
            .bind(projection)
            .bind(partition_number(partition.count()))
            .bind(partition_number(partition.index()))
            .fetch_optional(pool)
            .await
        }
        .context("loading the projection's horizon")?;
        Ok(Self {
            projection,
            partition,
            stream,
            horizon: horizon.unwrap_or_default(),
            confirmed_sequence: 0,
            candidates: VecDeque::new(),
            last_relay_sequence: 0,
            last_relay_stream: None,
            last_check: None,
        })
    }

    /// Whether the relay has published transactions this projection has not confirmed.
    pub(super) fn is_behind(&self, relay: &Checkpoint) -> bool {
        relay.horizon > self.horizon
    }

    /// Forgets what the consumer had confirmed (it was recreated).
    pub(super) fn consumer_reset(&mut self) {
        self.confirmed_sequence = 0;
        self.candidates.clear();
    }

    /// Moves the horizon as far as the consumer confirms, given the relay's checkpoint `relay`
    /// (read before calling). Asks the consumer at most every [`MIN_CHECK_INTERVAL`].
    ///
    /// The checkpoint speaks of one stream (its identity, [`Checkpoint::stream_created`]); the
    /// consumer reads whichever stream exists. So the stream's identity is read *after* the
    /// consumer's state: when it is still the checkpoint's, that stream existed from before the
    /// checkpoint was read until after the consumer answered (identities never repeat), so the
    /// consumer's answer was about it. Otherwise nothing is adopted: the relay republishes into
    /// the new stream and checkpoints it, and the horizon moves on then.
    pub(super) async fn advance(
        &mut self,
        pool: &PgPool,
        consumer: &PullConsumer,
        relay: Checkpoint,
    ) -> anyhow::Result<()> {
        if relay.stream_sequence < self.last_relay_sequence
            || relay.stream_created != self.last_relay_stream
        {
            self.consumer_reset();
        }
        self.last_relay_sequence = relay.stream_sequence;
        self.last_relay_stream = relay.stream_created;
        if !self.is_behind(&relay) {
            return Ok(());
        }
        let Some(relay_stream) = relay.stream_created else {
            // A checkpoint that names no stream vouches for none.
            return Ok(());
        };
        if relay.stream_sequence <= self.confirmed_sequence {
            return self.store(pool, relay.horizon, None).await;
        }
        if self
            .last_check
            .is_some_and(|at| at.elapsed() < MIN_CHECK_INTERVAL)
        {
            self.remember(relay);
            return Ok(());
        }
        self.last_check = Some(Instant::now());
        let info = consumer
            .get_info()
            .await
            .context("reading the consumer's state")?;
        let (current_stream, _) =
            crate::stream::look_up(&self.stream.jetstream, &self.stream.namespace)
                .await
                .context("reading the stream's identity")?;
        if current_stream != relay_stream {
            self.consumer_reset();
            return Ok(());
        }
        let pending = info.num_pending + u64::try_from(info.num_ack_pending).unwrap_or(u64::MAX);
        let mut horizon = self.horizon;
        if pending == 0 {
            // Everything the stream held when we asked, which includes all the relay had
            // checkpointed before, is delivered and acked.
            self.confirmed_sequence = self.confirmed_sequence.max(relay.stream_sequence);
            self.candidates.clear();
            horizon = horizon.max(relay.horizon);
        } else {
            self.confirmed_sequence = self.confirmed_sequence.max(info.ack_floor.stream_sequence);
            self.remember(relay);
            while let Some(front) = self.candidates.front() {
                if front.stream_sequence > self.confirmed_sequence {
                    break;
                }
                horizon = horizon.max(front.horizon);
                self.candidates.pop_front();
            }
        }
        self.store(pool, horizon, Some(pending)).await
    }

    fn remember(&mut self, relay: Checkpoint) {
        let full = self.candidates.len() >= MAX_CANDIDATES;
        match self.candidates.back_mut() {
            Some(last) if last.stream_sequence == relay.stream_sequence => {
                last.horizon = last.horizon.max(relay.horizon);
            }
            Some(last) if last.stream_sequence > relay.stream_sequence => {}
            _ if !full => self.candidates.push_back(relay),
            _ => {}
        }
    }

    async fn store(
        &mut self,
        pool: &PgPool,
        horizon: i64,
        pending: Option<u64>,
    ) -> anyhow::Result<()> {
        if horizon <= self.horizon && pending.is_none() {
            return Ok(());
        }
        let pending = pending.map(|p| i64::try_from(p).unwrap_or(i64::MAX));
        let pending = if self.partition.is_whole() {
            sqlx::query(
                "UPDATE projection_positions SET \
                   horizon = GREATEST(horizon, $2::text::xid8), \
                   pending = COALESCE($3, pending), \
                   lag_seconds = CASE WHEN $3 = 0 THEN 0 ELSE lag_seconds END, \
                   updated_at = now() \
                 WHERE name = $1",
            )
            .bind(self.projection)
            .bind(horizon)
            .bind(pending)
            .execute(pool)
            .await
            .context("storing the projection's horizon")?;
            pending
        } else {
            self.store_partition(pool, horizon, pending).await?
        };
        self.horizon = self.horizon.max(horizon);
        if let Some(pending) = pending {
            let pending = u64::try_from(pending).unwrap_or_default();
            metrics::gauge!("commerce_projection_pending", "projection" => self.projection)
                .set(pending as f64);
            if pending == 0 {
                metrics::gauge!("commerce_projection_lag_seconds", "projection" => self.projection)
                    .set(0.0);
            }
        }
        Ok(())
    }

    /// Stores a partition's horizon, and moves the projection's to the lowest of its
    /// partitions' once every partition has one; returns the messages pending in all of them.
    ///
    /// The projection's row is locked first: partitions then move it one at a time, each
    /// reading the others' horizons after the last one committed (read committed: every
    /// statement sees what committed before it began). Without the lock, two partitions moving
    /// at once could each read the other's old horizon, and leave the projection's behind both
    /// until the next move, which an idle deployment might never make.
    async fn store_partition(
        &self,
        pool: &PgPool,
        horizon: i64,
        pending: Option<i64>,
    ) -> anyhow::Result<Option<i64>> {
        let count = partition_number(self.partition.count());
        let mut tx = pool
            .begin()
            .await
            .context("storing a partition's horizon")?;
        sqlx::query("SELECT 1 FROM projection_positions WHERE name = $1 FOR UPDATE")
            .bind(self.projection)
            .execute(&mut *tx)
            .await
            .context("locking the projection's horizon")?;
        sqlx::query(
            "INSERT INTO projection_partitions (projection, partitions, partition, horizon, pending) \
             VALUES ($1, $2, $3, $4::text::xid8, COALESCE($5, 0)) \
             ON CONFLICT (projection, partitions, partition) DO UPDATE SET \
               horizon = GREATEST(projection_partitions.horizon, EXCLUDED.horizon), \
               pending = COALESCE($5, projection_partitions.pending), \
               updated_at = now()",
        )
        .bind(self.projection)
        .bind(count)
        .bind(partition_number(self.partition.index()))
        .bind(horizon)
        .bind(pending)
        .execute(&mut *tx)
        .await
        .context("storing the partition's horizon")?;
        // xid8 has no min() before Postgres 16: compare them as the numbers they are.
        let total: Option<i64> = sqlx::query_scalar(
            "UPDATE projection_positions p SET \
               horizon = GREATEST(p.horizon, m.horizon::text::xid8), \
               pending = m.pending, \
               lag_seconds = CASE WHEN m.pending = 0 THEN 0 ELSE p.lag_seconds END, \
               updated_at = now() \
             FROM (SELECT min(horizon::text::bigint) AS horizon, sum(pending)::bigint AS pending \
                   FROM projection_partitions WHERE projection = $1 AND partitions = $2 \
                   HAVING count(*) = $2) m \
             WHERE p.name = $1 \
             RETURNING m.pending",
        )
        .bind(self.projection)
        .bind(count)
        .fetch_optional(&mut *tx)
        .await
        .context("moving the projection's horizon")?;
        tx.commit()
            .await
            .context("committing the partition's horizon")?;
        Ok(total)
    }
}

/// A partition number or count as the `integer` columns hold it (at most [`super::MAX_PARTITIONS`]).
fn partition_number(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

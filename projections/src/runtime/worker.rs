//! One projection's worker: consume, apply in batches, ack, move the watermark.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::consumer::{
    pull, AckPolicy, DeliverPolicy, Info as ConsumerInfo, PullConsumer,
};
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::{self, Message};
use futures::{FutureExt, StreamExt, TryStreamExt};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::apply::{apply_batch, seconds_since, BatchReport};
use super::horizon::{HorizonTracker, StreamOf};
use super::{subjects_of, ErasedProjection, Partition, ProjectionConfig, SharedProjection};
use crate::failure::{is_transient, Backoff};
use crate::namespace::subject_matches;
use crate::outage::{Failure, Outage};
use crate::relay::checkpoint::Checkpoint;
use crate::{Namespace, StoredEvent};

/// How long a pull request waits on the server before it is renewed.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// How often the server proves an idle pull request is alive.
const PULL_HEARTBEAT: Duration = Duration::from_secs(1);

pub(super) struct Worker {
    pub(super) pool: PgPool,
    pub(super) jetstream: jetstream::Context,
    pub(super) namespace: Namespace,
    pub(super) config: ProjectionConfig,
    pub(super) projection: SharedProjection,
    /// The share of the projection's aggregates this worker applies.
    pub(super) partition: Partition,
    pub(super) marks: watch::Receiver<Checkpoint>,
}

/// A message taken apart: what to apply, and what to ack without applying.
enum Delivery {
    Event {
        stream_sequence: u64,
        event: StoredEvent,
    },
    NotFollowed,
    Malformed,
}

impl Worker {
    fn projection(&self) -> &dyn ErasedProjection {
        &*self.projection.0
    }

    fn name(&self) -> &'static str {
        self.projection.0.erased_name()
    }

    fn consumer_name(&self) -> String {
        self.partition.consumer_name(&self.namespace, self.name())
    }

    /// Runs until `cancel` is cancelled, starting over after failures.
    pub(super) async fn run(mut self, cancel: CancellationToken) {
        let mut backoff = Backoff::new(self.config.retry_backoff, self.config.max_backoff);
        let outage = Outage::default();
        loop {
            match self.run_until_failure(&cancel, &mut backoff, &outage).await {
                Ok(()) => {
                    self.set_state("stopped", None).await;
                    return;
                }
                Err(error) => {
                    let error = format!("{error:#}");
                    // NATS down fails every worker at once: a WARN each, then one ERROR each if
                    // it lasts (the relay and the NATS watcher say the same for the process).
                    if outage.fail(error.clone()) == Failure::Started {
                        tracing::warn!(projection = self.name(), %error, "the projection failed; starting over");
                    } else {
                        tracing::debug!(projection = self.name(), %error, "the projection failed again; starting over");
                    }
                    if let Some((down, lasted)) = outage.overdue(self.config.outage_error_after) {
                        tracing::error!(
                            projection = self.name(),
                            error = down.reason,
                            down_since = %down.since,
                            down_seconds = lasted.as_secs(),
                            "the projection has been failing for over {}s: its read model is stale",
                            self.config.outage_error_after.as_secs()
                        );
                    }
                    self.set_state("failing", Some(&error)).await;
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(backoff.next_pause()) => {}
                    }
                }
            }
        }
    }

    async fn run_until_failure(
        &mut self,
        cancel: &CancellationToken,
        backoff: &mut Backoff,
        outage: &Outage,
    ) -> anyhow::Result<()> {
        crate::stream::ensure(
            &self.jetstream,
            &self.namespace,
            self.config.stream_replicas,
        )
        .await?;
        let consumer = self.consumer().await?;
        self.set_state("running", None).await;
        let stream = StreamOf {
            jetstream: self.jetstream.clone(),
            namespace: self.namespace.clone(),
        };
        let tracker = HorizonTracker::load(&self.pool, self.name(), self.partition, stream).await?;
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(self.config.batch_size.max(1))
            .expires(PULL_EXPIRES)
            .heartbeat(PULL_HEARTBEAT)
            .messages()
            .await
            .context("pulling from the consumer")?;
        tracing::info!(projection = self.name(), consumer = %self.consumer_name(), "projection running");
        backoff.reset();
        if let Some(lasted) = outage.recover() {
            tracing::info!(
                projection = self.name(),
                down_seconds = lasted.as_secs(),
                "the projection is running again"
            );
        }
        self.refresh_dead_letter_gauge().await;

        // The watermark moves in its own task: asking the consumer for its state can take tens
        // of milliseconds, which batches should not wait for.
        let (applied, applied_rx) = watch::channel(0_u64);
        let watermark = cancel.child_token();
        let _stop_watermark = watermark.clone().drop_guard();
        tokio::spawn(track_watermark(
            tracker,
            self.pool.clone(),
            consumer,
            self.marks.clone(),
            applied_rx,
            self.config.idle_tick,
            watermark,
        ));

        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => return Ok(()),
                first = messages.next() => {
                    if let Some(Err(error)) = &first {
                        if error.kind() == pull::MessagesErrorKind::MissingHeartbeat {
                            tracing::warn!(projection = self.name(), %error, "the server missed a heartbeat");
                            // The stream may have been deleted (and its consumers with it):
                            // then start over, which recreates both.
                            self.check_consumer_exists().await?;
                            continue;
                        }
                    }
                    let batch = self.gather(next_message(first)?, &mut messages).await?;
                    if !self.handle(batch, cancel).await? {
                        return Ok(());
                    }
                    applied.send_modify(|batches| *batches += 1);
                }
            }
        }
    }

    /// A batch starting with `first`: whatever is already buffered, and, while the server says
    /// more messages are pending, whatever arrives within [`ProjectionConfig::batch_linger`].
    /// A lone message at low traffic is applied at once.
    async fn gather(
        &self,
        first: Message,
        messages: &mut pull::Stream,
    ) -> anyhow::Result<Vec<Message>> {
        let deadline = tokio::time::Instant::now() + self.config.batch_linger;
        let mut batch = vec![first];
        while batch.len() < self.config.batch_size {
            if let Some(next) = messages.next().now_or_never() {
                batch.push(next_message(next)?);
                continue;
            }
            let more_pending = batch
                .last()
                .and_then(|message| message.info().ok())
                .is_some_and(|info| info.pending > 0);
            if !more_pending {
                break;
            }
            match tokio::time::timeout_at(deadline, messages.next()).await {
                Ok(next) => batch.push(next_message(next)?),
                Err(_) => break,
            }
        }
        Ok(batch)
    }

    /// Applies a batch and acks it; `false` when cancelled before it committed (nothing acked).
    async fn handle(
        &self,
        batch: Vec<Message>,
        cancel: &CancellationToken,
    ) -> anyhow::Result<bool> {
        let filters = subjects_of(self.projection(), &self.namespace);
        let mut events = Vec::with_capacity(batch.len());
        let mut ignored = 0_u64;
        let mut malformed = Vec::new();
        let mut traces = Vec::new();
        for (index, message) in batch.iter().enumerate() {
            match self.take_apart(message, &filters) {
                Delivery::Event {
                    stream_sequence,
                    event,
                } => {
                    traces.extend(StoredEvent::trace_context(&message.message));
                    events.push((stream_sequence, event));
                }
                Delivery::NotFollowed => ignored += 1,
                Delivery::Malformed => malformed.push(index),
            }
        }
        // Commit order; a message redelivered within the batch is applied once.
        events.sort_by_key(|(sequence, _)| *sequence);
        events.dedup_by_key(|(sequence, _)| *sequence);
        let events: Vec<StoredEvent> = events.into_iter().map(|(_, event)| event).collect();

        let report = if events.is_empty() {
            BatchReport::default()
        } else {
            let applied = self.apply_with_retries(&events, cancel);
            let applied = match self.batch_span(events.len(), traces) {
                Some(span) => applied.instrument(span).await,
                None => applied.await,
            };
            match applied {
                Some(report) => report,
                None => return Ok(false),
            }
        };

        let malformed_ref = &malformed;
        let acks = batch.iter().enumerate().map(|(index, message)| async move {
            let kind = if malformed_ref.contains(&index) {
                AckKind::Term
            } else {
                AckKind::Ack
            };
            message.ack_with(kind).await
        });
        for result in futures::future::join_all(acks).await {
            if let Err(error) = result {
                // The message comes back after the ack wait and is skipped as a duplicate.
                tracing::warn!(projection = self.name(), %error, "acking a message failed");
            }
        }
        self.record_metrics(&report, ignored, malformed.len());
        if report.parked > 0 {
            self.refresh_dead_letter_gauge().await;
        }
        Ok(true)
    }

    /// The span of a batch whose messages carried trace contexts (`traces`, in order): a child
    /// of the first, linked to the first message of every other trace. None when tracing is
    /// off or no message was traced.
    fn batch_span(
        &self,
        events: usize,
        traces: Vec<commerce_store::trace::Context>,
    ) -> Option<tracing::Span> {
        let mut traces = traces.into_iter();
        let parent = traces.next()?;
        let span = tracing::info_span!(
            "projection_batch",
            otel.kind = "consumer",
            projection = self.name(),
            events
        );
        let mut seen = vec![commerce_store::trace::trace_id(&parent)];
        for other in traces {
            let trace_id = commerce_store::trace::trace_id(&other);
            if !seen.contains(&trace_id) {
                seen.push(trace_id);
                commerce_store::trace::add_link(&span, &other);
            }
        }
        commerce_store::trace::set_parent(&span, parent);
        Some(span)
    }

    fn take_apart(&self, message: &Message, filters: &[String]) -> Delivery {
        let stream_sequence = match message.info() {
            Ok(info) => info.stream_sequence,
            Err(error) => {
                tracing::error!(projection = self.name(), %error, subject = %message.subject, "a message without JetStream metadata");
                return Delivery::Malformed;
            }
        };
        if !filters
            .iter()
            .any(|filter| subject_matches(filter, &message.subject))
            || !self.partition.owns_subject(&message.subject)
        {
            return Delivery::NotFollowed;
        }
        match StoredEvent::from_message(&message.message) {
            Ok(event) => Delivery::Event {
                stream_sequence,
                event,
            },
            Err(error) => {
                tracing::error!(projection = self.name(), error = format!("{error:#}"), subject = %message.subject, stream_sequence, "a message that is not an event: dropped");
                Delivery::Malformed
            }
        }
    }

    /// Applies the batch, retrying failures that did not let it commit (infrastructure and
    /// transient ones, see [`crate::failure`]) with backoff, for as long as it takes; `None`
    /// when cancelled. Its messages stay unacked meanwhile.
    async fn apply_with_retries(
        &self,
        events: &[StoredEvent],
        cancel: &CancellationToken,
    ) -> Option<BatchReport> {
        let mut backoff = Backoff::new(self.config.retry_backoff, self.config.max_backoff);
        loop {
            let attempt = apply_batch(
                &self.pool,
                self.projection(),
                events,
                self.config.max_attempts,
            );
            let result = tokio::select! {
                () = cancel.cancelled() => return None,
                result = attempt => result,
            };
            match result {
                Ok(report) => return Some(report),
                Err(error) => {
                    let transient = is_transient(&error);
                    let error = format!("{error:#}");
                    if transient {
                        tracing::warn!(projection = self.name(), %error, "a batch met a transient failure; retrying");
                    } else {
                        tracing::error!(projection = self.name(), %error, "a batch failed; retrying");
                    }
                    metrics::counter!("commerce_projection_retries_total", "projection" => self.name())
                        .increment(1);
                    self.set_state("failing", Some(&error)).await;
                    tokio::select! {
                        () = cancel.cancelled() => return None,
                        () = tokio::time::sleep(backoff.next_pause()) => {}
                    }
                }
            }
        }
    }

    /// Fails when the consumer is gone, so that [`Worker::run`] creates it again.
    async fn check_consumer_exists(&self) -> anyhow::Result<()> {
        let stream = self
            .jetstream
            .get_stream(self.namespace.stream_name())
            .await
            .context("looking up the stream")?;
        stream
            .consumer_info(self.consumer_name())
            .await
            .context("looking up the consumer")?;
        Ok(())
    }

    async fn refresh_dead_letter_gauge(&self) {
        if let Err(error) = crate::dead_letters::refresh_gauge(&self.pool, self.name()).await {
            tracing::warn!(
                projection = self.name(),
                error = format!("{error:#}"),
                "could not refresh the dead-letter gauge"
            );
        }
    }

    fn record_metrics(&self, report: &BatchReport, ignored: u64, malformed: usize) {
        let name = self.name();
        for (outcome, count) in [
            ("applied", report.applied - report.healed),
            ("healed", report.healed),
            ("duplicate", report.duplicates),
            ("parked", report.parked),
            ("ignored", ignored),
            ("malformed", u64::try_from(malformed).unwrap_or(u64::MAX)),
        ] {
            if count > 0 {
                metrics::counter!("commerce_projection_events_total", "projection" => name, "outcome" => outcome)
                    .increment(count);
            }
        }
        if let Some(position) = report.max_position {
            metrics::gauge!("commerce_projection_position", "projection" => name)
                .set(position as f64);
        }
        if let Some(at) = report.last_recorded_at {
            metrics::gauge!("commerce_projection_lag_seconds", "projection" => name)
                .set(seconds_since(at));
        }
    }

    /// Creates the durable consumer, or brings it to the current filters.
    async fn consumer(&self) -> anyhow::Result<PullConsumer> {
        let name = self.consumer_name();
        let mut filters = subjects_of(self.projection(), &self.namespace);
        let multiple_filters = server_supports_filter_subjects(&self.jetstream);
        if filters.len() > 1 && !multiple_filters {
            // One filter per consumer before NATS 2.10: take everything, ignore the rest here.
            filters = vec![self.namespace.all_events()];
        }
        let mut config = pull::Config {
            durable_name: Some(name.clone()),
            description: Some(if self.partition.is_whole() {
                format!("projection {}", self.name())
            } else {
                format!("projection {}, partition {}", self.name(), self.partition)
            }),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.config.ack_wait,
            max_ack_pending: self.config.max_ack_pending,
            // 0: as many replicas as the stream. JetStream moves such a durable consumer with
            // its stream when the stream's replicas change (COMMERCE_STREAM_REPLICAS), and
            // refuses one with more replicas than its stream, which a number set here would be
            // while a relay is still scaling the stream up.
            num_replicas: 0,
            ..Default::default()
        };
        if filters.len() == 1 {
            config.filter_subject = filters.remove(0);
        } else {
            config.filter_subjects = filters;
        }
        let stream = self
            .jetstream
            .get_stream(self.namespace.stream_name())
            .await
            .context("looking up the stream")?;
        let siblings = self.consumers_of_projection(&stream).await?;
        // The server refuses to change where a consumer started: keep the existing one's.
        config.deliver_policy = match siblings.iter().find(|(_, info)| info.name == name) {
            Some((_, existing)) => existing.config.deliver_policy,
            None => self.start_of_new_consumer(&siblings),
        };
        match stream.create_consumer(config.clone()).await {
            Ok(consumer) => {
                self.retire_other_partition_counts(&stream).await?;
                Ok(consumer)
            }
            Err(error) => {
                // Servers before 2.10 refuse to change a durable consumer's filter: start it
                // over (projections skip what they already applied).
                tracing::warn!(consumer = %name, %error, "the consumer cannot be updated: recreating it");
                stream
                    .delete_consumer(&name)
                    .await
                    .context("deleting the outdated consumer")?;
                stream
                    .create_consumer(config)
                    .await
                    .context("creating the consumer")
            }
        }
    }

    /// Where a new consumer of this partition starts. After a change of the projection's
    /// partition count, the consumers of the old count are still there: together they have
    /// applied every message up to the lowest of their ack floors (each acks the others'
    /// messages without applying them, so one alone vouches for nothing), and the new consumer
    /// starts after it instead of at the beginning of the stream. Once every partition of the
    /// new count has its consumer, the old ones are deleted by whichever partition comes last.
    fn start_of_new_consumer(&self, siblings: &[(u32, ConsumerInfo)]) -> DeliverPolicy {
        let vouched = partition_counts(siblings)
            .iter()
            .filter(|(count, _)| **count != self.partition.count())
            .filter(|(count, floors)| floors.len() == **count as usize)
            .filter_map(|(_, floors)| floors.values().min().copied())
            .max();
        match vouched {
            Some(floor) if floor > 0 => {
                tracing::info!(
                    projection = self.name(),
                    partition = %self.partition,
                    start_sequence = floor + 1,
                    "a new partition count: its consumer starts where the old consumers all got to"
                );
                DeliverPolicy::ByStartSequence {
                    start_sequence: floor + 1,
                }
            }
            _ => DeliverPolicy::All,
        }
    }

    /// Deletes the consumers of another partition count once every partition of this one has
    /// its consumer (they would only redo the work).
    async fn retire_other_partition_counts(
        &self,
        stream: &jetstream::stream::Stream,
    ) -> anyhow::Result<()> {
        let groups = partition_counts(&self.consumers_of_projection(stream).await?);
        let mine = self.partition.count();
        if groups.get(&mine).map(BTreeMap::len) != Some(mine as usize) {
            return Ok(());
        }
        // The watermarks of another count speak of consumers about to go.
        sqlx::query("DELETE FROM projection_partitions WHERE projection = $1 AND partitions <> $2")
            .bind(self.name())
            .bind(i32::try_from(mine).unwrap_or(i32::MAX))
            .execute(&self.pool)
            .await
            .context("forgetting the watermarks of a former partition count")?;
        for (count, consumers) in groups.into_iter().filter(|(count, _)| *count != mine) {
            for name in consumers.keys() {
                tracing::info!(projection = self.name(), consumer = %name, partitions = count, "deleting the consumer of a former partition count");
                // Another partition may be deleting it at the same time.
                stream.delete_consumer(name).await.ok();
            }
        }
        Ok(())
    }

    /// The stream's consumers of this projection, with their partition count (1: whole).
    async fn consumers_of_projection(
        &self,
        stream: &jetstream::stream::Stream,
    ) -> anyhow::Result<Vec<(u32, ConsumerInfo)>> {
        let whole = self.namespace.consumer_name(self.name());
        let mut found = Vec::new();
        let mut consumers = stream.consumers();
        while let Some(info) = consumers
            .try_next()
            .await
            .context("listing the stream's consumers")?
        {
            let count = if info.name == whole {
                Some(1)
            } else {
                // Exactly `<whole>_p<i>of<K>`: another projection's name may begin like it.
                info.name
                    .strip_prefix(&whole)
                    .and_then(|rest| rest.strip_prefix("_p"))
                    .and_then(|rest| rest.split_once("of"))
                    .and_then(|(index, count)| {
                        let partition = Partition::new(index.parse().ok()?, count.parse().ok()?);
                        let partition = partition.ok()?;
                        (info.name == partition.consumer_name(&self.namespace, self.name()))
                            .then_some(partition.count())
                    })
            };
            if let Some(count) = count {
                found.push((count, info));
            }
        }
        Ok(found)
    }

    async fn set_state(&self, state: &str, error: Option<&str>) {
        // Partitions share the projection's row: an error says whose it is.
        let error = error.map(|error| {
            if self.partition.is_whole() {
                error.to_owned()
            } else {
                format!("partition {}: {error}", self.partition)
            }
        });
        let result = sqlx::query(
            "INSERT INTO projection_positions (name, state, last_error) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET state = EXCLUDED.state, \
               last_error = CASE EXCLUDED.state \
                 WHEN 'failing' THEN EXCLUDED.last_error \
                 WHEN 'running' THEN NULL \
                 ELSE projection_positions.last_error END, \
               updated_at = now()",
        )
        .bind(self.name())
        .bind(state)
        .bind(error)
        .execute(&self.pool)
        .await;
        if let Err(error) = result {
            tracing::warn!(projection = self.name(), %error, "could not record the projection's state");
        }
    }
}

/// Consumers of one projection by partition count (1: unpartitioned), each with its ack floor.
fn partition_counts(consumers: &[(u32, ConsumerInfo)]) -> BTreeMap<u32, BTreeMap<String, u64>> {
    let mut groups: BTreeMap<u32, BTreeMap<String, u64>> = BTreeMap::new();
    for (count, info) in consumers {
        groups
            .entry(*count)
            .or_default()
            .insert(info.name.clone(), info.ack_floor.stream_sequence);
    }
    groups
}

/// The next message of the pull stream, or why there is none.
fn next_message(next: Option<Result<Message, pull::MessagesError>>) -> anyhow::Result<Message> {
    next.context("the consumer's message stream ended")?
        .context("receiving from the consumer")
}

/// Whether the server takes several filter subjects per consumer (NATS 2.10 and later).
fn server_supports_filter_subjects(jetstream: &jetstream::Context) -> bool {
    let version = jetstream.client().server_info().version;
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|part| part.parse::<u64>().ok());
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= (2, 10)
}

/// Moves a worker's watermark whenever the relay checkpoints or a batch is applied, and every
/// `tick` while it is behind the relay, until `cancel` is cancelled. A failure only delays it.
async fn track_watermark(
    mut tracker: HorizonTracker,
    pool: PgPool,
    consumer: PullConsumer,
    mut marks: watch::Receiver<Checkpoint>,
    mut applied: watch::Receiver<u64>,
    tick: Duration,
    cancel: CancellationToken,
) {
    loop {
        let relay = *marks.borrow_and_update();
        if let Err(error) = tracker.advance(&pool, &consumer, relay).await {
            tracing::warn!(error = format!("{error:#}"), "could not move the watermark");
        }
        let behind = tracker.is_behind(&relay);
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = marks.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            changed = applied.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep(tick), if behind => {}
        }
    }
}

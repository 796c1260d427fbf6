//! The projection runtime: one worker per read model, fed by a durable JetStream consumer.
//!
//! A projection says which aggregate types it follows and how to apply one event inside a
//! Postgres transaction ([`Projection`]). The runtime does everything else:
//!
//! - **Consumer.** A durable pull consumer `<namespace>_<name>` on the stream, filtered on
//!   `<namespace>.events.<aggregate_type>.>` per followed type (several filters need NATS 2.10;
//!   on an older server the consumer takes every event and the worker ignores the rest),
//!   explicit acks, up to [`ProjectionConfig::max_ack_pending`] in flight.
//! - **Batches.** Messages are applied in batches, sorted by stream sequence, in ONE transaction
//!   that also records, per aggregate, the last sequence applied (`projection_sequences`) and
//!   the projection's progress (`projection_positions`). Messages are acked after the commit.
//! - **Duplicates and gaps.** An event at or below its aggregate's last applied sequence is a
//!   duplicate: acked, no effect. An event that skips ahead is *healed*: the missing events of
//!   that aggregate are read from the event store and applied first, in order. So redelivery,
//!   out-of-order delivery (`max_ack_pending > 1`) and messages lost by JetStream are harmless.
//! - **Failures.** Every failure is classified by [`crate::failure`]. A *transient* one (lost
//!   connection, pool timeout, deadlock, serialization failure, lock or statement timeout, …),
//!   whether of the bookkeeping or of the projection's own statements, rolls the batch back;
//!   it is retried with exponential backoff and jitter ([`ProjectionConfig::retry_backoff`] up
//!   to [`ProjectionConfig::max_backoff`]) for as long as it takes, its messages unacked, and
//!   `commerce_projection_retries_total` counts the retries. It is never parked: a parked
//!   event of the saga trigger would strand its order. A *deterministic* failure (the batch
//!   is first applied without savepoints; then again with a savepoint per event) is retried
//!   ([`ProjectionConfig::max_attempts`] in all), then parked in `dead_letters` with its
//!   error, its sequence counted as applied, and the batch goes on. A parked event of a
//!   projection that drives sagas ([`Projection::saga_of`]) also records its saga in
//!   `stuck_sagas`. `commerce_dead_letters` gauges the rows still parked, per projection.
//!
//! # The watermark: which events a projection has applied
//!
//! The relay publishes in `(tx_id, position)` order, not position order, and a projection never
//! sees events it does not follow, so "the highest position applied" promises nothing about
//! lower positions. The watermark is a transaction-id **horizon** `H` instead, stored in
//! `projection_positions.horizon`: *every event with `tx_id < H` that this projection follows has
//! been applied* (or parked). It is built on the relay's checkpoint, which says that every
//! event with `tx_id < relay.horizon` is in the stream at or below `relay.stream_sequence`.
//! A worker adopts a relay horizon once its consumer confirms that everything it follows up to
//! that stream sequence is acked, which it does only after commit:
//!
//! - the consumer's ack floor (`ack_floor.stream_sequence`) has reached that sequence, or
//! - the consumer has nothing left to deliver and nothing unacked (`num_pending == 0` and
//!   `num_ack_pending == 0`), checked *after* reading the relay's checkpoint.
//!
//! Relay checkpoints seen while busy are kept until the ack floor passes them, so the horizon
//! also moves under continuous load. Stream sequences only compare within one stream: a relay
//! checkpoint names its stream (`stream_created`), and a worker adopts it only when the stream
//! it reads, looked up *after* asking the consumer, is that one. When the stream is deleted and
//! recreated, the horizon therefore stays where it was (every event below it *was* applied)
//! until the relay has republished into the new stream and the consumer, created again by the
//! worker, has caught up. Relay checkpoints are announced by `NOTIFY
//! relay_checkpoint`, read once per process and shared by every worker.
//!
//! Why a transaction horizon is what read-your-writes needs: a command's response carries the
//! position `P` of its last event; that event's transaction committed before the client asked,
//! so it has a tx_id `T`, and any transaction that committed before this one got its id has a
//! smaller one. [`crate::positions::wait_for_position`] looks `T` up and waits until each named
//! projection's horizon exceeds it: then the client's own event, and everything that happened
//! before it, is in those read models.

mod apply;
mod horizon;
mod partition;
mod worker;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use futures::future::BoxFuture;
use sqlx::{PgConnection, PgPool};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub(crate) use apply::{apply_batch, apply_isolated, BatchReport};
pub use partition::{Partition, Partitioning, MAX_PARTITIONS};

use crate::namespace::is_valid_name;
use crate::relay::checkpoint::Checkpoint;
use crate::{Namespace, StoredEvent};

/// A read model built from events.
///
/// Implement `apply` with `async fn`:
///
/// ```
/// use commerce_projections::{Projection, StoredEvent};
/// use sqlx::PgConnection;
///
/// /// Each order's latest event type.
/// struct OrderStatus;
///
/// impl Projection for OrderStatus {
///     fn name(&self) -> &'static str {
///         "order_status"
///     }
///
///     fn aggregate_types(&self) -> &'static [&'static str] {
///         &["order"]
///     }
///
///     async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
///         sqlx::query(
///             "INSERT INTO order_status (order_id, status) VALUES ($1, $2) \
///              ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status",
///         )
///         .bind(&event.aggregate_id)
///         .bind(&event.event_type)
///         .execute(&mut *conn)
///         .await?;
///         Ok(())
///     }
/// }
/// ```
pub trait Projection: Send + Sync + 'static {
    /// Unique among projections, `[A-Za-z0-9_-]`: it names the durable consumer, the
    /// `projection_positions` row and the bookkeeping. Renaming it starts the projection over.
    fn name(&self) -> &'static str;

    /// The aggregate types whose events it applies; empty means every event.
    fn aggregate_types(&self) -> &'static [&'static str];

    /// The tables it writes and nothing else writes (unqualified names): what a rebuild builds
    /// anew in shadow tables and swaps in (see [`crate::rebuild`]). Its statements must name
    /// them unqualified, so that the rebuild's `search_path` sends them to the shadows. Empty,
    /// the default, means it cannot be rebuilt (the saga trigger).
    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    /// Applies one event to the read model, inside the transaction (a savepoint, on the retry
    /// path) of its batch: use `&mut *conn` as the executor, never commit. It is called once
    /// per event and aggregate in sequence order; it need not check for duplicates. An error
    /// rolls back this event's writes; after the last attempt the event is parked.
    fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Applies several events, in order, exactly as calling [`Projection::apply`] on each
    /// would. The runtime calls it for a whole batch on its fast path (an error sends the batch
    /// to the one-event-per-savepoint path, which calls `apply`). Override it to write a batch
    /// in a few set-based statements instead of a few per event.
    fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        async move {
            for event in events {
                self.apply(conn, event).await?;
            }
            Ok(())
        }
    }

    /// For a projection whose `apply_batch` folds the batch in memory and then writes it: the
    /// fold alone, without the database, so that a rebuild folds the next batch while this one
    /// is being written. Writing what it returns must do exactly what `apply_batch` does. `None`,
    /// the default: the rebuild calls `apply_batch`. A projection that folds ahead must not read
    /// the events' metadata: a rebuild reads the events it folds without it (`Value::Null`),
    /// and reads them again, whole, only for `apply_batch` and `apply`.
    fn fold_batch(&self, events: &[StoredEvent]) -> Option<anyhow::Result<Box<dyn FoldedBatch>>> {
        let _ = events;
        None
    }

    /// The saga this event drives, for a projection that starts or wakes sagas (the saga
    /// trigger); `None`, the default, for a plain read model. When such an event is parked its
    /// saga is recorded in `stuck_sagas`, in the same transaction, so that it is not silently
    /// stranded: nothing else would ever wake it.
    fn saga_of(&self, event: &StoredEvent) -> Option<Uuid> {
        let _ = event;
        None
    }
}

/// A batch a projection folded in memory ([`Projection::fold_batch`]), ready to be written.
pub trait FoldedBatch: Send + 'static {
    /// Writes it inside the caller's transaction, as `apply_batch` would have.
    fn write_into<'a>(
        self: Box<Self>,
        conn: &'a mut PgConnection,
    ) -> BoxFuture<'a, anyhow::Result<()>>;
}

/// How the busiest read models apply a batch: fold it in memory, keyed by row, then write it in
/// a statement or two per table. Such a projection's `apply_batch` is
/// `F::fold(events)?.write(conn)` and its `fold_batch` is [`fold_ahead`].
pub trait Fold: Default + Send + 'static {
    /// Folds one event in.
    fn add(&mut self, event: &StoredEvent) -> anyhow::Result<()>;

    /// Writes what was folded inside the caller's transaction.
    fn write(self, conn: &mut PgConnection) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Folds a batch, in order.
    fn fold(events: &[StoredEvent]) -> anyhow::Result<Self> {
        let mut folded = Self::default();
        for event in events {
            folded.add(event)?;
        }
        Ok(folded)
    }
}

impl<F: Fold> FoldedBatch for F {
    fn write_into<'a>(
        self: Box<Self>,
        conn: &'a mut PgConnection,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(Fold::write(*self, conn))
    }
}

/// [`Projection::fold_batch`] of a projection that applies batches through a [`Fold`].
pub fn fold_ahead<F: Fold>(events: &[StoredEvent]) -> Option<anyhow::Result<Box<dyn FoldedBatch>>> {
    Some(F::fold(events).map(|folded| Box::new(folded) as Box<dyn FoldedBatch>))
}

/// The object-safe face of [`Projection`], so that projections of different types share one
/// runtime.
pub(crate) trait ErasedProjection: Send + Sync + 'static {
    fn erased_name(&self) -> &'static str;
    fn erased_aggregate_types(&self) -> &'static [&'static str];
    fn erased_tables(&self) -> &'static [&'static str];
    fn erased_apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        event: &'a StoredEvent,
    ) -> BoxFuture<'a, anyhow::Result<()>>;
    fn erased_apply_batch<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [StoredEvent],
    ) -> BoxFuture<'a, anyhow::Result<()>>;
    fn erased_saga_of(&self, event: &StoredEvent) -> Option<Uuid>;
    fn erased_fold_batch(
        &self,
        events: &[StoredEvent],
    ) -> Option<anyhow::Result<Box<dyn FoldedBatch>>>;
}

impl<P: Projection> ErasedProjection for P {
    fn erased_name(&self) -> &'static str {
        self.name()
    }

    fn erased_aggregate_types(&self) -> &'static [&'static str] {
        self.aggregate_types()
    }

    fn erased_tables(&self) -> &'static [&'static str] {
        self.tables()
    }

    fn erased_apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        event: &'a StoredEvent,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.apply(conn, event))
    }

    fn erased_apply_batch<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [StoredEvent],
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.apply_batch(conn, events))
    }

    fn erased_saga_of(&self, event: &StoredEvent) -> Option<Uuid> {
        self.saga_of(event)
    }

    fn erased_fold_batch(
        &self,
        events: &[StoredEvent],
    ) -> Option<anyhow::Result<Box<dyn FoldedBatch>>> {
        self.fold_batch(events)
    }
}

/// Any [`Projection`] behind one type: for lists of projections (the runtime, the operator's
/// rebuild command). It is a `Projection` itself.
#[derive(Clone)]
pub struct SharedProjection(Arc<dyn ErasedProjection>);

impl SharedProjection {
    /// Wraps a projection.
    pub fn new(projection: impl Projection) -> Self {
        Self(Arc::new(projection))
    }
}

impl std::fmt::Debug for SharedProjection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SharedProjection")
            .field(&self.0.erased_name())
            .finish()
    }
}

impl Projection for SharedProjection {
    fn name(&self) -> &'static str {
        self.0.erased_name()
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        self.0.erased_aggregate_types()
    }

    fn tables(&self) -> &'static [&'static str] {
        self.0.erased_tables()
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        self.0.erased_apply(conn, event).await
    }

    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> anyhow::Result<()> {
        self.0.erased_apply_batch(conn, events).await
    }

    fn saga_of(&self, event: &StoredEvent) -> Option<Uuid> {
        self.0.erased_saga_of(event)
    }

    fn fold_batch(&self, events: &[StoredEvent]) -> Option<anyhow::Result<Box<dyn FoldedBatch>>> {
        self.0.erased_fold_batch(events)
    }
}

/// The subjects a projection's consumer follows.
pub fn filter_subjects(projection: &impl Projection, namespace: &Namespace) -> Vec<String> {
    subjects_of(projection, namespace)
}

fn subjects_of(projection: &dyn ErasedProjection, namespace: &Namespace) -> Vec<String> {
    let types = projection.erased_aggregate_types();
    if types.is_empty() {
        vec![namespace.all_events()]
    } else {
        types
            .iter()
            .map(|aggregate_type| namespace.aggregate_events(aggregate_type))
            .collect()
    }
}

/// How projection workers pace themselves.
#[derive(Debug, Clone)]
pub struct ProjectionConfig {
    /// Most messages applied in one transaction.
    pub batch_size: usize,
    /// How long a batch may wait for messages the server says are on their way.
    pub batch_linger: Duration,
    /// Attempts at applying one event that fails deterministically before it is parked
    /// (transient failures are retried without limit, never parked).
    pub max_attempts: u32,
    /// Messages delivered and not yet acked, per consumer.
    pub max_ack_pending: i64,
    /// How long JetStream waits for an ack before redelivering.
    pub ack_wait: Duration,
    /// How often a worker behind the relay's horizon checks its consumer when idle.
    pub idle_tick: Duration,
    /// First pause after a failed batch; it doubles up to [`Self::max_backoff`], each pause
    /// drawn between half and all of its step.
    pub retry_backoff: Duration,
    /// Longest pause between retries.
    pub max_backoff: Duration,
    /// How long a worker's failures (NATS down, say) are logged at WARN before they are
    /// logged, once, at ERROR.
    pub outage_error_after: Duration,
    /// The partitions of each projection this process runs (one worker each).
    pub partitions: Partitioning,
    /// The stream's replicas, should this worker be the one that creates it (the relay's
    /// [`crate::RelayConfig::stream_replicas`]); the consumers follow the stream's.
    pub stream_replicas: usize,
}

impl Default for ProjectionConfig {
    fn default() -> Self {
        Self {
            batch_size: 100,
            batch_linger: Duration::from_millis(20),
            max_attempts: 3,
            max_ack_pending: 1000,
            ack_wait: Duration::from_secs(10),
            idle_tick: Duration::from_millis(25),
            retry_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            outage_error_after: crate::outage::ERROR_AFTER,
            partitions: Partitioning::default(),
            stream_replicas: 1,
        }
    }
}

/// The projections of one process, each run by its own worker.
pub struct ProjectionRuntime {
    pool: PgPool,
    jetstream: jetstream::Context,
    namespace: Namespace,
    config: ProjectionConfig,
    projections: Vec<SharedProjection>,
}

impl ProjectionRuntime {
    /// A runtime without projections yet, with the default [`ProjectionConfig`].
    pub fn new(pool: PgPool, jetstream: jetstream::Context, namespace: Namespace) -> Self {
        Self {
            pool,
            jetstream,
            namespace,
            config: ProjectionConfig::default(),
            projections: Vec::new(),
        }
    }

    /// Replaces the configuration.
    pub fn with_config(mut self, config: ProjectionConfig) -> Self {
        self.config = config;
        self
    }

    /// Adds a projection.
    pub fn with(mut self, projection: impl Projection) -> Self {
        self.projections.push(SharedProjection::new(projection));
        self
    }

    /// Runs one worker per projection (per partition of a partitioned one) until `cancel` is
    /// cancelled. Workers retry their own failures; this returns an error only for an invalid
    /// set of projections (a bad or repeated name, partitions of an unknown one) or a worker
    /// that panicked.
    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let mut names = HashSet::new();
        for projection in &self.projections {
            let name = projection.name();
            anyhow::ensure!(
                is_valid_name(name),
                "projection name `{name}` must be 1 to 64 characters of [A-Za-z0-9_-]"
            );
            anyhow::ensure!(names.insert(name), "two projections are named `{name}`");
        }
        self.config.partitions.check(names.iter().copied())?;
        let (marks_tx, marks) = tokio::sync::watch::channel(Checkpoint::default());
        let mut tasks = JoinSet::new();
        tasks.spawn(horizon::watch_relay(
            self.pool.clone(),
            self.namespace.clone(),
            marks_tx,
            cancel.clone(),
        ));
        for projection in self.projections {
            for partition in self.config.partitions.of(projection.name()) {
                let worker = worker::Worker {
                    pool: self.pool.clone(),
                    jetstream: self.jetstream.clone(),
                    namespace: self.namespace.clone(),
                    config: self.config.clone(),
                    projection: projection.clone(),
                    partition,
                    marks: marks.clone(),
                };
                tasks.spawn(worker.run(cancel.clone()));
            }
        }
        let mut outcome = Ok(());
        while let Some(joined) = tasks.join_next().await {
            if let Err(error) = joined {
                tracing::error!(%error, "a projection task panicked");
                cancel.cancel();
                outcome = Err(anyhow::Error::new(error).context("a projection task panicked"));
            }
        }
        outcome
    }
}

/// Runs `projections` with `config` until `cancel` is cancelled; see [`ProjectionRuntime::run`].
pub async fn run_projections(
    pool: PgPool,
    jetstream: jetstream::Context,
    namespace: Namespace,
    projections: Vec<SharedProjection>,
    config: ProjectionConfig,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let mut runtime = ProjectionRuntime::new(pool, jetstream, namespace).with_config(config);
    runtime.projections = projections;
    runtime.run(cancel).await
}

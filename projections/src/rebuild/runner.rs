//! The rebuild runner: claims rebuilds and carries them through bulk, catch-up and swap.

use std::borrow::Cow;
use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context;
use sqlx::{Connection, PgConnection, PgExecutor, PgPool};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::jobs::RebuildState;
use super::shadow::Shadow;
use super::{PROJECTION_LOCK, REBUILD_CLAIM};
use crate::failure::{is_transient, Backoff};
use crate::runtime::{apply_isolated, BatchReport};
use crate::{FoldedBatch, Projection, SharedProjection, StoredEvent};

/// How rebuilds pace themselves.
#[derive(Debug, Clone)]
pub struct RebuildConfig {
    /// Events read and applied per transaction (and checkpoint).
    pub batch_size: i64,
    /// How often the runner looks for rebuilds to take up.
    pub poll: Duration,
    /// How long the swap waits for a lock (the live worker's batch, a long read) before it
    /// gives up, catches up a little more and tries again.
    pub lock_timeout: Duration,
    /// Attempts at an event that fails deterministically before it is parked; and at a batch
    /// that fails deterministically for another reason before the rebuild fails.
    pub max_attempts: u32,
}

impl Default for RebuildConfig {
    fn default() -> Self {
        Self {
            batch_size: 5000,
            poll: Duration::from_millis(200),
            lock_timeout: Duration::from_secs(5),
            max_attempts: 3,
        }
    }
}

/// Takes up every rebuild no process is working on (new ones, and those whose process died),
/// until `cancel` is cancelled. Several engines may run it: a rebuild is worked on by one at a
/// time.
pub async fn run_rebuilds(
    pool: PgPool,
    projections: Vec<SharedProjection>,
    config: RebuildConfig,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let mut tasks: JoinSet<Uuid> = JoinSet::new();
    let mut active: HashSet<Uuid> = HashSet::new();
    loop {
        while let Some(done) = tasks.try_join_next() {
            match done {
                Ok(id) => {
                    active.remove(&id);
                }
                Err(error) => tracing::error!(%error, "a rebuild task panicked"),
            }
        }
        if let Err(error) = take_up(
            &pool,
            &projections,
            &config,
            &cancel,
            &mut tasks,
            &mut active,
        )
        .await
        {
            tracing::warn!(
                error = format!("{error:#}"),
                "could not look for rebuilds to run"
            );
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(config.poll) => {}
        }
    }
    // Each task stops at its next batch; what it committed is its checkpoint.
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn take_up(
    pool: &PgPool,
    projections: &[SharedProjection],
    config: &RebuildConfig,
    cancel: &CancellationToken,
    tasks: &mut JoinSet<Uuid>,
    active: &mut HashSet<Uuid>,
) -> anyhow::Result<()> {
    let waiting: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT rebuild_id, projection FROM projection_rebuilds \
         WHERE state IN ('pending', 'bulk', 'catching_up', 'swapping') ORDER BY requested_at",
    )
    .fetch_all(pool)
    .await
    .context("listing rebuilds to run")?;
    metrics::gauge!("commerce_rebuilds_running").set(waiting.len() as f64);
    for (id, name) in waiting {
        if active.contains(&id) {
            continue;
        }
        let Some(projection) = projections.iter().find(|p| p.name() == name) else {
            // Another engine version knows it; leave it to that one.
            continue;
        };
        let Some(claim) = Claim::take(pool, id).await? else {
            continue;
        };
        tracing::info!(rebuild_id = %id, projection = name, fence = claim.fence, "taking up a rebuild");
        let rebuild = Rebuild {
            pool: pool.clone(),
            shadow: Shadow::new(projection.name(), projection.tables()),
            projection: projection.clone(),
            id,
            config: config.clone(),
            claim,
            cancel: cancel.clone(),
        };
        active.insert(id);
        tasks.spawn(rebuild.run());
    }
    Ok(())
}

/// The right to work on one rebuild: a session advisory lock on a connection of its own (freed
/// when the process dies, so another can take over), and the fencing token taken with it.
struct Claim {
    _lock: PgConnection,
    fence: i64,
}

impl Claim {
    async fn take(pool: &PgPool, id: Uuid) -> anyhow::Result<Option<Self>> {
        // Detached: dropping it closes it, and the lock goes with it.
        let mut lock = pool
            .acquire()
            .await
            .context("a connection to hold a rebuild's lock")?
            .detach();
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
            .bind(REBUILD_CLAIM)
            .bind(id.to_string())
            .fetch_one(&mut lock)
            .await
            .context("locking a rebuild")?;
        if !locked {
            return Ok(None);
        }
        let fence: Option<i64> = sqlx::query_scalar(
            "UPDATE projection_rebuilds SET fence = nextval('projection_rebuild_fences'), \
                 resumes = resumes + CASE WHEN state = 'pending' THEN 0 ELSE 1 END, \
                 state = CASE WHEN state = 'pending' THEN 'bulk' ELSE state END, \
                 run_started_at = now(), run_events_start = events_done, updated_at = now() \
             WHERE rebuild_id = $1 AND state IN ('pending', 'bulk', 'catching_up', 'swapping') \
             RETURNING fence",
        )
        .bind(id)
        .fetch_optional(&mut lock)
        .await
        .context("claiming a rebuild")?;
        Ok(fence.map(|fence| Self { _lock: lock, fence }))
    }
}

/// Where a rebuild stands, as its row says.
#[derive(Debug, sqlx::FromRow)]
struct Checkpoint {
    state: RebuildState,
    cancel_requested: bool,
    bulk_horizon: Option<i64>,
    /// Whether Postgres restarted since the shadow tables were made.
    postgres_restarted: bool,
    cursor_tx: i64,
    cursor_position: i64,
}

/// Why a rebuild stopped working.
#[derive(Debug, PartialEq)]
enum Stop {
    Completed,
    Cancelled,
    /// Another process holds it now (or it ended meanwhile): never write again.
    Lost,
    /// This process is shutting down: the checkpoint stays for the next one.
    ShuttingDown,
}

struct Rebuild {
    pool: PgPool,
    projection: SharedProjection,
    shadow: Shadow,
    id: Uuid,
    config: RebuildConfig,
    claim: Claim,
    cancel: CancellationToken,
}

/// Events read in commit order, with the transaction id that orders them.
#[derive(sqlx::FromRow)]
struct Row {
    tx_id: i64,
    #[sqlx(flatten)]
    event: StoredEvent,
}

/// A batch, and its fold when the projection folds ahead.
struct Folded {
    batch: Batch,
    write: Option<Box<dyn FoldedBatch>>,
}

/// A batch read, and where the cursor stands after it.
struct Batch {
    /// Its events; `None` once folded: a fold is written without them, and they are read again,
    /// whole, only when it cannot be (so that a batch in flight holds its fold, not both).
    events: Option<Vec<StoredEvent>>,
    /// Whether its events were read with their metadata: only then are they whole.
    metadata: bool,
    /// The cursor before it, and the horizon it was read below: where to read it again.
    after: (i64, i64),
    horizon: i64,
    len: usize,
    last: (i64, i64),
    full: bool,
}

impl Rebuild {
    async fn run(self) -> Uuid {
        let id = self.id;
        let name = self.projection.name();
        match self.drive().await {
            Ok(stop) => {
                tracing::info!(rebuild_id = %id, projection = name, ?stop, "a rebuild stopped")
            }
            Err(error) => {
                let error = format!("{error:#}");
                tracing::error!(rebuild_id = %id, projection = name, error, "a rebuild failed");
                if let Err(again) = self.end(RebuildState::Failed, Some(&error)).await {
                    tracing::error!(rebuild_id = %id, error = format!("{again:#}"), "could not record a failed rebuild");
                }
            }
        }
        metrics::gauge!("commerce_rebuild_events_per_second", "projection" => name).set(0.0);
        id
    }

    async fn drive(&self) -> anyhow::Result<Stop> {
        let checkpoint = self.checkpoint().await?;
        if checkpoint.cancel_requested {
            return self.end(RebuildState::Cancelled, None).await;
        }
        let restarted_in_bulk = checkpoint.state == RebuildState::Bulk
            && checkpoint.bulk_horizon.is_some()
            && checkpoint.postgres_restarted;
        if restarted_in_bulk {
            tracing::warn!(rebuild_id = %self.id, "Postgres restarted during the bulk phase, whose tables are unlogged: starting it over");
        }
        let bulk_horizon = checkpoint.bulk_horizon.filter(|_| !restarted_in_bulk);
        let Some(bulk_horizon) = bulk_horizon else {
            return match self.prepare().await? {
                Some(()) => Box::pin(self.drive()).await,
                None => Ok(Stop::Lost),
            };
        };
        let mut conn = self.pool.acquire().await?;
        anyhow::ensure!(
            self.shadow.exists(&mut conn).await?,
            "the rebuild's shadow tables are gone: start a new rebuild"
        );
        drop(conn);
        let mut cursor = (checkpoint.cursor_tx, checkpoint.cursor_position);
        if checkpoint.state == RebuildState::Bulk {
            let began = std::time::Instant::now();
            if let Some(stop) = self.apply_below(bulk_horizon, &mut cursor).await? {
                return Ok(stop);
            }
            let bulk = began.elapsed();
            let mut conn = self.pool.acquire().await?;
            self.shadow.finish_indexes(&mut conn).await?;
            tracing::info!(
                rebuild_id = %self.id,
                projection = self.projection.name(),
                bulk_seconds = bulk.as_secs_f64(),
                index_seconds = (began.elapsed() - bulk).as_secs_f64(),
                "bulk phase done: catching up"
            );
            if !self.set_state(&mut *conn, RebuildState::CatchingUp).await? {
                return Ok(Stop::Lost);
            }
        }
        loop {
            if self.cancel.is_cancelled() {
                return Ok(Stop::ShuttingDown);
            }
            let horizon = xid_horizon(&self.pool).await?;
            let remaining = self.count_between(cursor, horizon).await?;
            if remaining <= self.config.batch_size {
                let began = std::time::Instant::now();
                match self.swap().await {
                    Ok(stop) => {
                        tracing::info!(
                            rebuild_id = %self.id,
                            projection = self.projection.name(),
                            swap_seconds = began.elapsed().as_secs_f64(),
                            ?stop,
                            "swap done"
                        );
                        return Ok(stop);
                    }
                    Err(error) if is_transient(&error) => {
                        tracing::info!(
                            rebuild_id = %self.id,
                            error = format!("{error:#}"),
                            "the swap must wait: catching up a little more first"
                        );
                        tokio::time::sleep(self.config.poll).await;
                    }
                    Err(error) => return Err(error),
                }
            }
            if let Some(stop) = self.apply_below(horizon, &mut cursor).await? {
                return Ok(stop);
            }
        }
    }

    async fn checkpoint(&self) -> anyhow::Result<Checkpoint> {
        sqlx::query_as(
            "SELECT state, cancel_requested, bulk_horizon, cursor_tx, cursor_position, \
                    postgres_started_at IS DISTINCT FROM pg_postmaster_start_time() AS postgres_restarted \
             FROM projection_rebuilds WHERE rebuild_id = $1",
        )
        .bind(self.id)
        .fetch_one(&self.pool)
        .await
        .context("reading a rebuild's checkpoint")
    }

    /// Creates the shadow tables and fixes the bulk horizon, together. `None`: lost the claim.
    async fn prepare(&self) -> anyhow::Result<Option<()>> {
        let mut tx = self.pool.begin().await?;
        self.shadow.create(&mut tx).await?;
        let horizon = xid_horizon(&mut *tx).await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events \
             WHERE tx_id < $1::text::xid8 AND ($2::text[] IS NULL OR aggregate_type = ANY($2))",
        )
        .bind(horizon)
        .bind(self.types())
        .fetch_one(&mut *tx)
        .await
        .context("counting the events to rebuild from")?;
        let fenced = sqlx::query(
            "UPDATE projection_rebuilds SET bulk_horizon = $3, events_total = $4, \
                 postgres_started_at = pg_postmaster_start_time(), cursor_tx = 0, cursor_position = 0, \
                 events_done = 0, events_parked = 0, run_events_start = 0, run_started_at = now(), \
                 updated_at = now() \
             WHERE rebuild_id = $1 AND fence = $2",
        )
        .bind(self.id)
        .bind(self.claim.fence)
        .bind(horizon)
        .bind(total)
        .execute(&mut *tx)
        .await
        .context("fixing the bulk horizon")?;
        if fenced.rows_affected() == 0 {
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(()))
    }

    fn types(&self) -> Option<Vec<String>> {
        let types = self.projection.aggregate_types();
        (!types.is_empty()).then(|| types.iter().map(|t| t.to_string()).collect())
    }

    async fn count_between(&self, after: (i64, i64), horizon: i64) -> anyhow::Result<i64> {
        // Counted up to one more than a batch: the caller only asks whether a batch is left.
        let types = self.types();
        sqlx::query_scalar(&format!(
            "SELECT count(*) FROM ({}) left_to_apply",
            in_commit_order("1", types.as_ref().map_or(0, Vec::len))
        ))
        .bind(after.0)
        .bind(after.1)
        .bind(horizon)
        .bind(&types)
        .bind(self.config.batch_size + 1)
        .fetch_one(&self.pool)
        .await
        .context("counting the events left to apply")
    }

    /// Applies every event after `cursor` with a transaction id below `horizon`, a batch per
    /// transaction with its checkpoint. Three stages overlap: the next batch is read, and the
    /// one after it folded in memory ([`Projection::fold_batch`]), while this one is written.
    async fn apply_below(
        &self,
        horizon: i64,
        cursor: &mut (i64, i64),
    ) -> anyhow::Result<Option<Stop>> {
        let (batches, mut read) = tokio::sync::mpsc::channel::<anyhow::Result<Batch>>(1);
        let reader = {
            let pool = self.pool.clone();
            let types = self.types();
            let limit = self.config.batch_size;
            // A fold never sees an event's metadata (see `Projection::fold_batch`): about half
            // of the JSON of an order's or a product's events, not read, sent nor parsed.
            let metadata = self.projection.fold_batch(&[]).is_none();
            let mut after = *cursor;
            tokio::spawn(async move {
                loop {
                    let batch = read_batch(&pool, after, horizon, &types, limit, metadata).await;
                    let more = matches!(&batch, Ok(b) if b.full);
                    if let Ok(b) = &batch {
                        after = b.last;
                    }
                    if batches.send(batch).await.is_err() || !more {
                        return;
                    }
                }
            })
        };
        let (folds, mut ready) = tokio::sync::mpsc::channel::<anyhow::Result<Folded>>(1);
        let folder = {
            let projection = self.projection.clone();
            tokio::spawn(async move {
                while let Some(batch) = read.recv().await {
                    // A batch that does not fold is written through `apply_batch`, whose
                    // failure sends it down the one-event-at-a-time path.
                    let folded = batch.map(|mut batch| {
                        let events = batch.events.as_deref().unwrap_or_default();
                        let write = projection.fold_batch(events).and_then(Result::ok);
                        if write.is_some() || !batch.metadata {
                            batch.events = None;
                        }
                        Folded { batch, write }
                    });
                    if folds.send(folded).await.is_err() {
                        return;
                    }
                }
            })
        };
        let outcome = async {
            while let Some(folded) = ready.recv().await {
                let Folded { batch, write } = folded?;
                if batch.len == 0 {
                    break;
                }
                if let Some(stop) = self.apply_with_retries(&batch, write).await? {
                    return Ok(Some(stop));
                }
                *cursor = batch.last;
                if self.cancel.is_cancelled() {
                    return Ok(Some(Stop::ShuttingDown));
                }
            }
            Ok(None)
        }
        .await;
        reader.abort();
        folder.abort();
        outcome
    }

    async fn apply_with_retries(
        &self,
        batch: &Batch,
        mut write: Option<Box<dyn FoldedBatch>>,
    ) -> anyhow::Result<Option<Stop>> {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        let mut failures = 0;
        loop {
            // The fold is written once: a retry goes through `apply_batch`.
            match self.apply_and_checkpoint(batch, write.take()).await {
                Ok(Some((cancel_requested, per_second))) => {
                    metrics::gauge!("commerce_rebuild_events_per_second", "projection" => self.projection.name())
                        .set(per_second);
                    if cancel_requested {
                        return self.end(RebuildState::Cancelled, None).await.map(Some);
                    }
                    return Ok(None);
                }
                Ok(None) => return Ok(Some(Stop::Lost)),
                Err(error) if is_transient(&error) => {
                    tracing::warn!(rebuild_id = %self.id, error = format!("{error:#}"), "a rebuild batch failed: retrying");
                }
                Err(error) => {
                    failures += 1;
                    if failures >= self.config.max_attempts {
                        return Err(error);
                    }
                }
            }
            if self.cancel.is_cancelled() {
                return Ok(Some(Stop::ShuttingDown));
            }
            tokio::time::sleep(backoff.next_pause()).await;
        }
    }

    /// One batch into the shadow tables with its checkpoint: `None` when the claim is lost
    /// (nothing committed), else whether an operator asked to cancel, and the current rate.
    async fn apply_and_checkpoint(
        &self,
        batch: &Batch,
        write: Option<Box<dyn FoldedBatch>>,
    ) -> anyhow::Result<Option<(bool, f64)>> {
        let mut tx = self.pool.begin().await?;
        let report = self.apply(&mut tx, batch, write).await?;
        let checkpoint: Option<(bool, f64)> = sqlx::query_as(
            "UPDATE projection_rebuilds SET cursor_tx = $3, cursor_position = $4, \
                 events_done = events_done + $5, events_parked = events_parked + $6, \
                 events_total = GREATEST(events_total, events_done + $5), \
                 events_per_second = COALESCE((events_done + $5 - run_events_start) \
                     / NULLIF(extract(epoch FROM clock_timestamp() - run_started_at), 0), 0), \
                 updated_at = now() \
             WHERE rebuild_id = $1 AND fence = $2 \
             RETURNING cancel_requested, events_per_second",
        )
        .bind(self.id)
        .bind(self.claim.fence)
        .bind(batch.last.0)
        .bind(batch.last.1)
        .bind(i64::try_from(batch.len).unwrap_or(i64::MAX))
        .bind(i64::try_from(report.parked).unwrap_or(i64::MAX))
        .fetch_optional(&mut *tx)
        .await
        .context("checkpointing a rebuild")?;
        if checkpoint.is_some() {
            tx.commit().await.context("committing a rebuild batch")?;
        }
        Ok(checkpoint)
    }

    /// Applies events to the shadow tables inside `conn`'s transaction: the whole batch (its
    /// fold `write`, when it was folded ahead, else through the projection's `apply_batch`), or,
    /// when that fails deterministically, each event under a savepoint, parking those that keep
    /// failing (in the shadow `dead_letters`).
    async fn apply(
        &self,
        conn: &mut PgConnection,
        batch: &Batch,
        write: Option<Box<dyn FoldedBatch>>,
    ) -> anyhow::Result<BatchReport> {
        let mut report = BatchReport::default();
        self.shadow.route_writes(conn).await?;
        let mut events = batch
            .events
            .as_deref()
            .filter(|_| batch.metadata)
            .map(Cow::Borrowed);
        let attempt = {
            let mut savepoint = conn.begin().await?;
            let written = match write {
                Some(write) => write.write_into(&mut savepoint).await,
                None => {
                    let events = match &mut events {
                        Some(events) => events,
                        None => {
                            events.insert(Cow::Owned(self.read_again(&mut savepoint, batch).await?))
                        }
                    };
                    self.projection.apply_batch(&mut savepoint, events).await
                }
            };
            match written {
                Ok(()) => savepoint.commit().await.map_err(anyhow::Error::from),
                Err(error) => {
                    savepoint.rollback().await?;
                    Err(error)
                }
            }
        };
        match attempt {
            Ok(()) => report.applied = batch.len as u64,
            Err(error) if is_transient(&error) => return Err(error),
            Err(_) => {
                let events = match events {
                    Some(events) => events,
                    None => Cow::Owned(self.read_again(conn, batch).await?),
                };
                for event in events.iter() {
                    apply_isolated(
                        conn,
                        &self.projection,
                        event,
                        self.config.max_attempts,
                        &mut report,
                    )
                    .await?;
                }
            }
        }
        Ok(report)
    }

    /// The events of a folded batch, whole, read again from the store.
    async fn read_again(
        &self,
        conn: &mut PgConnection,
        batch: &Batch,
    ) -> anyhow::Result<Vec<StoredEvent>> {
        let limit = i64::try_from(batch.len).unwrap_or(i64::MAX);
        let again =
            read_batch(conn, batch.after, batch.horizon, &self.types(), limit, true).await?;
        anyhow::ensure!(
            again.len == batch.len && again.last == batch.last,
            "a batch read again is not the batch that was folded"
        );
        again.events.context("a batch read whole has its events")
    }

    /// The last events and the swap, in one transaction (see the module documentation).
    async fn swap(&self) -> anyhow::Result<Stop> {
        let name = self.projection.name();
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!(
            "SET LOCAL lock_timeout = {}",
            self.config.lock_timeout.as_millis().max(1)
        ))
        .execute(&mut *tx)
        .await?;
        // Every live batch of this projection holds it shared: the ones in flight finish
        // first, the next ones wait for the commit.
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(PROJECTION_LOCK)
            .bind(name)
            .execute(&mut *tx)
            .await
            .context("stopping the live worker for the swap")?;
        let cursor: Option<(i64, i64, bool)> = sqlx::query_as(
            "SELECT cursor_tx, cursor_position, cancel_requested FROM projection_rebuilds \
             WHERE rebuild_id = $1 AND fence = $2 FOR UPDATE",
        )
        .bind(self.id)
        .bind(self.claim.fence)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((cursor_tx, cursor_position, cancel_requested)) = cursor else {
            return Ok(Stop::Lost);
        };
        if cancel_requested {
            drop(tx);
            return self.end(RebuildState::Cancelled, None).await;
        }
        sqlx::query(
            "UPDATE projection_rebuilds SET state = 'swapping', updated_at = now() WHERE rebuild_id = $1",
        )
        .bind(self.id)
        .execute(&mut *tx)
        .await?;
        let horizon = xid_horizon(&mut *tx).await?;
        let types = self.types();
        let mut after = (cursor_tx, cursor_position);
        let (mut done, mut parked) = (0_i64, 0_u64);
        loop {
            let batch = read_batch(
                &mut *tx,
                after,
                horizon,
                &types,
                self.config.batch_size,
                true,
            )
            .await?;
            if batch.len > 0 {
                parked += self.apply(&mut tx, &batch, None).await?.parked;
                done += i64::try_from(batch.len).unwrap_or(i64::MAX);
                after = batch.last;
            }
            if !batch.full {
                break;
            }
        }
        sqlx::query("SET LOCAL search_path TO public")
            .execute(&mut *tx)
            .await?;
        // The live worker goes on from where it was: what the new tables hold is a duplicate
        // to it, what they lack (committed at or after the horizon) is still on its way.
        sqlx::query("DELETE FROM projection_sequences WHERE projection = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .context("clearing the projection's sequences")?;
        // Each aggregate's last sequence straight from the primary key, in its order (an
        // index-only scan, where filtering on `tx_id` would read the whole table): it is the
        // last below the horizon except for the few aggregates with an event at or above it
        // (found through `events_type_commit_order`), whose last below it is looked up apart.
        // Planned for this horizon (unnamed): a plan for any horizon would scan the table for
        // the events above it.
        let types = match types {
            Some(types) => types,
            None => sqlx::query_scalar("SELECT DISTINCT aggregate_type FROM events")
                .fetch_all(&mut *tx)
                .await
                .context("listing the aggregate types")?,
        };
        sqlx::query(
            "WITH later AS ( \
                 SELECT DISTINCT aggregate_type, aggregate_id FROM events \
                 WHERE aggregate_type = ANY($3) AND tx_id >= $2::text::xid8) \
             INSERT INTO projection_sequences (projection, aggregate_type, aggregate_id, last_sequence) \
             SELECT $1, e.aggregate_type, e.aggregate_id, max(e.sequence) FROM events e \
             WHERE e.aggregate_type = ANY($3) \
               AND NOT EXISTS (SELECT 1 FROM later l \
                               WHERE l.aggregate_type = e.aggregate_type AND l.aggregate_id = e.aggregate_id) \
             GROUP BY e.aggregate_type, e.aggregate_id \
             UNION ALL \
             SELECT $1, e.aggregate_type, e.aggregate_id, max(e.sequence) FROM events e \
             JOIN later l ON l.aggregate_type = e.aggregate_type AND l.aggregate_id = e.aggregate_id \
             WHERE e.tx_id < $2::text::xid8 \
             GROUP BY e.aggregate_type, e.aggregate_id",
        )
        .persistent(false)
        .bind(name)
        .bind(horizon)
        .bind(&types)
        .execute(&mut *tx)
        .await
        .context("setting the projection's sequences from the store")?;
        self.shadow.replace_dead_letters(&mut tx, name).await?;
        self.shadow.swap(&mut tx).await?;
        sqlx::query(
            "UPDATE projection_rebuilds SET state = 'completed', cursor_tx = $2, cursor_position = $3, \
                 events_done = events_done + $4, events_parked = events_parked + $5, \
                 events_total = events_done + $4, finished_at = now(), updated_at = now() \
             WHERE rebuild_id = $1",
        )
        .bind(self.id)
        .bind(after.0)
        .bind(after.1)
        .bind(done)
        .bind(i64::try_from(parked).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
        tx.commit().await.context("committing the swap")?;
        Ok(Stop::Completed)
    }

    async fn set_state(
        &self,
        executor: impl PgExecutor<'_>,
        state: RebuildState,
    ) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "UPDATE projection_rebuilds SET state = $3, updated_at = now() \
             WHERE rebuild_id = $1 AND fence = $2",
        )
        .bind(self.id)
        .bind(self.claim.fence)
        .bind(state)
        .execute(executor)
        .await
        .context("recording a rebuild's state")?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends the rebuild (cancelled or failed) and drops its shadow tables.
    async fn end(&self, state: RebuildState, error: Option<&str>) -> anyhow::Result<Stop> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE projection_rebuilds SET state = $3, error = $4, finished_at = now(), updated_at = now() \
             WHERE rebuild_id = $1 AND fence = $2 AND state NOT IN ('completed', 'failed', 'cancelled')",
        )
        .bind(self.id)
        .bind(self.claim.fence)
        .bind(state)
        .bind(error)
        .execute(&mut *tx)
        .await
        .context("ending a rebuild")?;
        if done.rows_affected() == 0 {
            return Ok(Stop::Lost);
        }
        self.shadow.drop(&mut tx).await?;
        tx.commit().await?;
        Ok(match state {
            RebuildState::Cancelled => Stop::Cancelled,
            _ => Stop::Lost,
        })
    }
}

/// Every transaction with a lower id has committed or aborted (xid8, as a number).
async fn xid_horizon(executor: impl PgExecutor<'_>) -> anyhow::Result<i64> {
    sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        .fetch_one(executor)
        .await
        .context("reading the xid horizon")
}

/// Up to `limit` events after `after` in commit order, with a transaction id below `horizon`;
/// without their metadata (`Value::Null`) unless `metadata`.
async fn read_batch(
    executor: impl PgExecutor<'_>,
    after: (i64, i64),
    horizon: i64,
    types: &Option<Vec<String>>,
    limit: i64,
    metadata: bool,
) -> anyhow::Result<Batch> {
    let sql = in_commit_order(
        &format!(
            "e.tx_id::text::bigint AS tx_id, e.aggregate_type, e.aggregate_id, e.sequence, \
             e.position, e.event_type, e.event_version, e.payload, {} AS metadata, e.recorded_at",
            if metadata {
                "e.metadata"
            } else {
                "'null'::jsonb"
            }
        ),
        types.as_ref().map_or(0, Vec::len),
    );
    let rows: Vec<Row> = sqlx::query_as(&sql)
        .bind(after.0)
        .bind(after.1)
        .bind(horizon)
        .bind(types)
        .bind(limit)
        .fetch_all(executor)
        .await
        .context("reading events to rebuild from")?;
    let full = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= limit;
    let last = rows
        .last()
        .map_or(after, |row| (row.tx_id, row.event.position));
    Ok(Batch {
        len: rows.len(),
        events: Some(rows.into_iter().map(|row| row.event).collect()),
        metadata,
        after,
        horizon,
        last,
        full,
    })
}

/// `SELECT columns` of the events after the cursor `($1, $2)` with a transaction id below `$3`,
/// of the aggregate types `$4` (all of them when `types` is 0, and `$4` is NULL), in commit
/// order, up to `$5`, as `e`.
///
/// A projection's types are read each through `events_type_commit_order` and merged: through
/// `events_commit_order`, shared by every type, a rebuild of the orders would fetch every
/// product event from the heap only to skip it.
fn in_commit_order(columns: &str, types: usize) -> String {
    // ORDER BY names the columns qualified: bare, it would sort by the bigint alias and miss
    // the index.
    const AFTER: &str = "(tx_id, position) > ($1::text::xid8, $2) AND tx_id < $3::text::xid8";
    if types == 0 {
        return format!(
            "SELECT {columns} FROM events e WHERE {AFTER} AND $4::text[] IS NULL \
             ORDER BY e.tx_id, e.position LIMIT $5"
        );
    }
    let each: Vec<String> = (1..=types)
        .map(|n| {
            format!(
                "(SELECT * FROM events WHERE aggregate_type = ($4::text[])[{n}] AND {AFTER} \
                 ORDER BY events.tx_id, events.position LIMIT $5)"
            )
        })
        .collect();
    format!(
        "SELECT {columns} FROM ({}) e ORDER BY e.tx_id, e.position LIMIT $5",
        each.join(" UNION ALL ")
    )
}

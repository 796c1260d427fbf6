//! The relay: the only way events leave the event store.
//!
//! It publishes every row of `events`, in commit order, to the JetStream stream
//! `<NAMESPACE>_EVENTS` on `<namespace>.events.<aggregate_type>.<aggregate_id>` (see
//! [`crate::envelope`] for the message), then stores its checkpoint in `relay_checkpoint`.
//!
//! - **Gap safety.** Positions are handed out before commit, so position 101 can become visible
//!   before 100. The relay reads only rows of transactions older than every running one
//!   (`tx_id < pg_snapshot_xmin(pg_current_snapshot())`), after its checkpoint
//!   `(tx_id, position)`, ordered by `(tx_id, position)`: an open transaction holds back every
//!   younger one, and nothing is ever skipped.
//! - **At least once, deduplicated.** A batch (500 events by default) is published pipelined,
//!   every acknowledgement is awaited, and only then is the checkpoint stored. A relay that dies
//!   in between republishes the batch with the same `Nats-Msg-Id`s, which JetStream drops within
//!   its duplicate window; later duplicates are skipped by projections.
//! - **One active relay per namespace.** The active relay holds a session advisory lock on a
//!   connection of its own and runs all its queries on it, so it stops reading and
//!   checkpointing the moment that connection is lost. Other instances wait as hot standbys,
//!   trying the lock every second, and take over when the active one's connection closes.
//! - **Waking up.** `LISTEN events_appended` (a statement trigger notifies it) wakes the relay,
//!   with polling as a fallback (500 ms), and a quick re-poll (20 ms) while events wait behind
//!   an open older transaction.
//! - **Stream identity.** The checkpoint names the stream it speaks of by its creation time. On
//!   every batch the relay compares it, and the stream's last sequence, with the stream that
//!   exists: a stream deleted and recreated, or shortened, resets the checkpoint and everything
//!   is published again from the start of the store (projections skip what they have).
//! - **Unpublishable events.** An event larger than the bus's `max_payload` is parked in
//!   `relay_parked_events` with the reason and skipped (`commerce_relay_parked_events_total`);
//!   projections following its aggregate still read it from the store when they heal the gap.
//! - **Watermark.** The checkpoint's `horizon` says every event with `tx_id < horizon` is in the
//!   stream named by `stream_created`, at or below `stream_sequence` (or was parked);
//!   projections build their own watermark on it (see [`crate::runtime`]).
//! - **Retention.** The relay creates the stream, or brings an existing one to the retention it
//!   is given ([`RelayConfig::stream_max_age`], `COMMERCE_STREAM_MAX_AGE`, 7 days by default)
//!   and replicas ([`RelayConfig::stream_replicas`], `COMMERCE_STREAM_REPLICAS`, 1 by default),
//!   at start and whenever it finds the stream's retention or replicas changed. Messages dropped by age leave
//!   the front of the stream and its last sequence as it was: that is not a shortened stream,
//!   and nothing is republished for it (the store keeps every event; a projection that needs
//!   older ones is rebuilt from the store).
//! - **Degraded mode.** When NATS is unreachable (or Postgres, for the relay's own connection)
//!   commands are still accepted and stored; the relay retries every
//!   [`RelayConfig::retry_backoff`] and publishes the backlog, in commit order, once it can. The
//!   outage is logged at WARN at once, at ERROR once it has lasted
//!   [`RelayConfig::outage_error_after`], at INFO when it ends; [`RelayStatus::down`] says since
//!   when and why (`/health/ready` shows it) and `commerce_relay_connected` is 0 meanwhile.
//! - **Telemetry.** `commerce_relay_events_published_total`, `commerce_relay_lag_seconds` (the
//!   age of the oldest event not yet published, roughly), `commerce_relay_active` and
//!   `commerce_relay_connected`, each labelled with the namespace.

mod active;
pub(crate) mod batch;
pub mod checkpoint;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream;
use sqlx::postgres::PgListener;
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

pub use active::{ActiveRelay, Published};
pub use checkpoint::Checkpoint;

use crate::outage::{Down, Failure, Outage};
use crate::Namespace;

/// The channel the event store's statement trigger notifies on every append.
pub const EVENTS_CHANNEL: &str = "events_appended";

/// How the relay paces itself.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Events read and published per batch.
    pub batch_size: usize,
    /// How long to wait for a notification before looking anyway.
    pub poll_interval: Duration,
    /// How soon to look again while events wait behind an open older transaction.
    pub horizon_retry: Duration,
    /// How often a standby tries to take the lock.
    pub standby_interval: Duration,
    /// How long to wait after a failure before starting over.
    pub retry_backoff: Duration,
    /// Names this instance in `pg_stat_activity.application_name` of its lock connection
    /// (`commerce-relay <namespace> <instance>`), so operators can see who is active.
    pub instance: String,
    /// How long the stream keeps a message (`Duration::ZERO`: for ever).
    pub stream_max_age: Duration,
    /// On how many servers of a NATS cluster the stream (and its consumers) are kept.
    pub stream_replicas: usize,
    /// How long an outage is logged at WARN before it is logged, once, at ERROR.
    pub outage_error_after: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            horizon_retry: Duration::from_millis(20),
            standby_interval: Duration::from_secs(1),
            retry_backoff: Duration::from_secs(1),
            instance: format!("pid-{}", std::process::id()),
            stream_max_age: crate::stream::DEFAULT_MAX_AGE,
            stream_replicas: 1,
            outage_error_after: crate::outage::ERROR_AFTER,
        }
    }
}

/// What a relay is doing, shared with whoever holds a clone (health checks, tests).
#[derive(Debug, Clone, Default)]
pub struct RelayStatus(Arc<StatusInner>);

#[derive(Debug, Default)]
struct StatusInner {
    active: AtomicBool,
    published: AtomicU64,
    /// The last attempt reached NATS (and Postgres) and did its work.
    connected: AtomicBool,
    outage: Outage,
}

impl RelayStatus {
    /// Whether this relay holds the lock and publishes.
    pub fn is_active(&self) -> bool {
        self.0.active.load(Ordering::Acquire)
    }

    /// How many events this relay has published (acknowledged and checkpointed), duplicates
    /// of a republished batch included.
    pub fn published(&self) -> u64 {
        self.0.published.load(Ordering::Acquire)
    }

    fn set_active(&self, namespace: &Namespace, active: bool) {
        self.0.active.store(active, Ordering::Release);
        metrics::gauge!("commerce_relay_active", "namespace" => namespace.to_string())
            .set(if active { 1.0 } else { 0.0 });
    }

    fn add_published(&self, events: u64) {
        self.0.published.fetch_add(events, Ordering::AcqRel);
    }

    /// Whether the relay's last attempt reached NATS and Postgres and did its work (publishing
    /// as the active relay, or standing by). False before its first attempt.
    pub fn is_connected(&self) -> bool {
        self.0.connected.load(Ordering::Acquire)
    }

    /// Since when the relay has been failing, and its latest error; `None` while it works.
    pub fn down(&self) -> Option<Down> {
        self.0.outage.down()
    }

    fn set_connected(&self, namespace: &Namespace, connected: bool) {
        self.0.connected.store(connected, Ordering::Release);
        metrics::gauge!("commerce_relay_connected", "namespace" => namespace.to_string())
            .set(if connected { 1.0 } else { 0.0 });
    }

    /// An attempt failed: WARN when an outage starts, ERROR once when it has lasted
    /// `error_after`.
    fn failed(&self, namespace: &Namespace, error: &anyhow::Error, error_after: Duration) {
        self.set_connected(namespace, false);
        let reason = format!("{error:#}");
        match self.0.outage.fail(reason.clone()) {
            Failure::Started => tracing::warn!(
                %namespace,
                error = reason,
                "the relay cannot publish: commands are still accepted and stored, reads fall \
                 behind until it can; retrying"
            ),
            Failure::Continuing => {
                tracing::debug!(%namespace, error = reason, "the relay still cannot publish")
            }
        }
        if let Some((down, lasted)) = self.0.outage.overdue(error_after) {
            tracing::error!(
                %namespace,
                down_since = %down.since,
                down_seconds = lasted.as_secs(),
                error = down.reason,
                "the relay has not published for over {}s: events are stored but not published, \
                 read models are stale",
                error_after.as_secs()
            );
        }
    }

    /// An attempt worked: ends an outage, if one was running.
    fn succeeded(&self, namespace: &Namespace) {
        if !self.is_connected() {
            self.set_connected(namespace, true);
        }
        if let Some(lasted) = self.0.outage.recover() {
            tracing::info!(
                %namespace,
                down_seconds = lasted.as_secs(),
                "the relay reaches NATS again: publishing the events stored meanwhile"
            );
        }
    }
}

/// Publishes a namespace's events from Postgres to JetStream; see the module documentation.
pub struct Relay {
    pool: PgPool,
    jetstream: jetstream::Context,
    namespace: Namespace,
    config: RelayConfig,
    status: RelayStatus,
}

impl Relay {
    /// A relay with the default [`RelayConfig`].
    pub fn new(pool: PgPool, jetstream: jetstream::Context, namespace: Namespace) -> Self {
        Self {
            pool,
            jetstream,
            namespace,
            config: RelayConfig::default(),
            status: RelayStatus::default(),
        }
    }

    /// Replaces the configuration.
    pub fn with_config(mut self, config: RelayConfig) -> Self {
        self.config = config;
        self
    }

    /// A handle on what this relay is doing.
    pub fn status(&self) -> RelayStatus {
        self.status.clone()
    }

    /// Waits for the lock, then publishes until `cancel` is cancelled. Failures (Postgres or
    /// NATS unreachable, the lock connection lost) are logged and the relay starts over, as a
    /// standby, after [`RelayConfig::retry_backoff`]; it only returns when cancelled.
    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        loop {
            match self.run_until_failure(&cancel).await {
                Ok(()) => return Ok(()),
                Err(error) => {
                    self.status
                        .failed(&self.namespace, &error, self.config.outage_error_after);
                    tokio::select! {
                        () = cancel.cancelled() => return Ok(()),
                        () = tokio::time::sleep(self.config.retry_backoff) => {}
                    }
                }
            }
        }
    }

    /// Takes the lock if it is free: `None` when another relay holds it. The returned relay
    /// publishes one batch per [`ActiveRelay::publish_next`]; [`Relay::run`] is the usual
    /// way to drive it.
    pub async fn try_activate(&self) -> anyhow::Result<Option<ActiveRelay>> {
        self.apply_stream().await?;
        let mut conn = self.lock_connection().await?;
        if !self.try_lock(&mut conn).await? {
            conn.close().await.ok();
            return Ok(None);
        }
        self.activate(conn).await.map(Some)
    }

    async fn run_until_failure(&self, cancel: &CancellationToken) -> anyhow::Result<()> {
        self.apply_stream().await?;
        let Some(mut active) = self.wait_for_lock(cancel).await? else {
            return Ok(());
        };
        tracing::info!(namespace = %self.namespace, instance = %self.config.instance, "this relay is now active");
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .context("connecting the relay's listener")?;
        listener
            .listen(EVENTS_CHANNEL)
            .await
            .context("listening for appended events")?;
        loop {
            let cycle = async {
                let published = active.publish_next().await?;
                active.store_checkpoint(&published).await?;
                anyhow::Ok(published)
            };
            let published = tokio::select! {
                () = cancel.cancelled() => break,
                published = cycle => published?,
            };
            self.status.succeeded(&self.namespace);
            if published.full {
                continue;
            }
            let pause = if published.waiting_since.is_some() {
                self.config.horizon_retry
            } else {
                self.config.poll_interval
            };
            tokio::select! {
                () = cancel.cancelled() => break,
                notification = listener.recv() => {
                    notification.context("waiting for appended events")?;
                    while listener.next_buffered().is_some() {}
                }
                () = tokio::time::sleep(pause) => {}
            }
            self.check_nats()?;
        }
        active.release().await
    }

    /// Creates the stream, or brings it to this relay's retention and replicas.
    async fn apply_stream(&self) -> anyhow::Result<jetstream::stream::Info> {
        crate::stream::apply(
            &self.jetstream,
            &self.namespace,
            self.config.stream_max_age,
            self.config.stream_replicas,
        )
        .await
    }

    /// Fails at once when the NATS connection is lost, rather than when a request to it times
    /// out: the outage is reported without waiting for one.
    fn check_nats(&self) -> anyhow::Result<()> {
        let state = self.jetstream.client().connection_state();
        anyhow::ensure!(
            state == async_nats::connection::State::Connected,
            "the connection to NATS is lost ({state:?})"
        );
        Ok(())
    }

    /// Tries the lock until it is taken (`Some`) or `cancel` is cancelled (`None`).
    async fn wait_for_lock(
        &self,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Option<ActiveRelay>> {
        let mut conn = self.lock_connection().await?;
        let mut announced = false;
        loop {
            if self.try_lock(&mut conn).await? {
                return self.activate(conn).await.map(Some);
            }
            if !announced {
                tracing::info!(namespace = %self.namespace, instance = %self.config.instance, "another relay is active: standing by");
                announced = true;
            }
            self.check_nats()?;
            self.status.succeeded(&self.namespace);
            tokio::select! {
                () = cancel.cancelled() => {
                    conn.close().await.ok();
                    return Ok(None);
                }
                () = tokio::time::sleep(self.config.standby_interval) => {}
            }
        }
    }

    async fn activate(&self, conn: PgConnection) -> anyhow::Result<ActiveRelay> {
        let active = ActiveRelay {
            conn,
            jetstream: self.jetstream.clone(),
            namespace: self.namespace.clone(),
            batch_size: self.config.batch_size.max(1),
            stream_max_age: self.config.stream_max_age,
            stream_replicas: self.config.stream_replicas,
            checkpoint: Checkpoint::default(),
            status: self.status.clone(),
            lock_key: lock_key(&self.namespace),
        };
        self.status.set_active(&self.namespace, true);
        active.start().await
    }

    /// A connection outside the pool: the lock lives exactly as long as it does.
    async fn lock_connection(&self) -> anyhow::Result<PgConnection> {
        let options = (*self.pool.connect_options())
            .clone()
            .application_name(&format!(
                "commerce-relay {} {}",
                self.namespace, self.config.instance
            ))
            .disable_statement_logging();
        PgConnection::connect_with(&options)
            .await
            .context("connecting the relay's lock connection")
    }

    async fn try_lock(&self, conn: &mut PgConnection) -> anyhow::Result<bool> {
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(lock_key(&self.namespace))
            .fetch_one(conn)
            .await
            .context("trying the relay lock")
    }
}

/// The advisory lock key of a namespace's relay: FNV-1a (64 bits) of `commerce-relay:<namespace>`,
/// stable across processes and versions.
pub fn lock_key(namespace: &Namespace) -> i64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = "commerce-relay:"
        .bytes()
        .chain(namespace.as_str().bytes())
        .fold(OFFSET, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(PRIME)
        });
    i64::from_ne_bytes(hash.to_ne_bytes())
}

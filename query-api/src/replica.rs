//! A streaming replica for the read routes (`COMMERCE_READ_DATABASE_URL`): read while it answers
//! and is close behind the primary; the primary is read instead while it is not.
//!
//! Read-your-writes holds on the replica by construction. A projection commits its read-model
//! rows and its horizon (`projection_positions`) in one transaction, and a hot standby makes each
//! replayed transaction visible whole, in the primary's commit order. A request with
//! `X-Min-Position` looks up, on the replica, the transaction of the event at that position (a
//! replica that has not replayed the write yet has no such event: the request waits, it never
//! answers stale), then waits there for the horizons to pass it, then reads the replica: what it
//! reads includes the write. The wait and the reads must see the same database, so a request
//! picks one when it starts ([`crate::Reads`]) and keeps it. What must take effect at once
//! (forgetting someone: the keys [`crate::Reads::reveal`] reads) is read on the primary.
//!
//! One task ([`ReadReplica::watch`]) looks every [`CHECK_EVERY`]: at the primary's flushed WAL
//! position, and at how far the replica has replayed. The replica is as far behind as the oldest
//! WAL position the primary had flushed and the replica has not replayed yet is old (an idle
//! primary writes no WAL: then nothing is behind, however old the last commit). Past
//! `COMMERCE_READ_MAX_LAG`, or not answering within [`CHECK_TIMEOUT`], reads go to the primary
//! until it answers again and has come within half that bound (so it does not flap at the
//! bound). A request that finds the replica gone before the task does answers 503 with
//! `Retry-After` and sends the next ones to the primary at once.
//!
//! Each change is logged once (WARN when reads fall back, INFO when they return) and shown by
//! `commerce_read_replica_in_use`, `commerce_read_replica_lag_seconds` and `/health/ready`
//! (which does not fail for it: the primary serves).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the replica's health is looked at.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);
/// A replica (or primary) that takes longer than this to answer the check is down.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a request waits for one of the replica pool's connections before it answers 503.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);
/// The replica pool's sessions are named this in the replica's `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "commerce-query-replica";
/// The WAL positions the primary had flushed that the lag is measured against, at most: one a
/// check while the replica is behind (beyond them, the lag shown stops growing; it is past any
/// sensible bound long before).
const MAX_MARKS: usize = 1024;

/// The WAL the primary has flushed: what a replica can have received.
const PRIMARY_WAL: &str = "SELECT (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::bigint";
/// The WAL the replica has replayed: what its readers see. A server that is not in recovery
/// (the URL names the primary itself) has replayed everything it has.
const REPLAYED_WAL: &str = "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
     ELSE pg_current_wal_flush_lsn() END - '0/0'::pg_lsn)::bigint";

/// Whether the replica is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaState {
    /// Not looked at yet: the primary is read meanwhile.
    Starting,
    /// Answering and close behind: read.
    Up,
    /// Not answering: the primary is read.
    Down,
    /// Answering but too far behind: the primary is read.
    Lagging,
}

impl ReplicaState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaState::Starting => "starting",
            ReplicaState::Up => "up",
            ReplicaState::Down => "down",
            ReplicaState::Lagging => "lagging",
        }
    }
}

/// The replica's health as last seen, for `/health/ready`.
#[derive(Debug, Clone)]
pub struct ReplicaStatus {
    pub state: ReplicaState,
    /// Since when it has been read (up), or not read (any other state).
    pub since: DateTime<Utc>,
    /// Why it is not read, when it is not.
    pub reason: Option<String>,
    /// How far behind it was at the last look that could tell.
    pub lag: Option<Duration>,
}

/// The replica's pool, its horizons and its health, shared by the process's requests and the
/// task that watches it.
#[derive(Clone)]
pub struct ReadReplica {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    horizons: commerce_projections::Horizons,
    primary: PgPool,
    max_lag: Duration,
    /// Read on every request: whether it goes to the replica.
    in_use: AtomicBool,
    status: Mutex<ReplicaStatus>,
}

/// What one look at the replica found.
enum Verdict {
    Replaying { lag: Duration },
    Down(String),
}

impl ReadReplica {
    /// The replica at `url` (connected lazily: it may be down now), beside `primary`, read while
    /// it is at most `max_lag` behind. Nothing is read from it until [`ReadReplica::watch`] has
    /// found it healthy.
    pub fn new(
        url: &str,
        max_connections: u32,
        primary: PgPool,
        max_lag: Duration,
    ) -> anyhow::Result<Self> {
        let pool = commerce_store::db::connect_read_replica(
            url,
            max_connections,
            APPLICATION_NAME,
            ACQUIRE_TIMEOUT,
        )?;
        metrics::gauge!("commerce_read_replica_in_use").set(0.0);
        Ok(Self {
            inner: Arc::new(Inner {
                horizons: commerce_projections::Horizons::new(pool.clone()),
                pool,
                primary,
                max_lag,
                in_use: AtomicBool::new(false),
                status: Mutex::new(ReplicaStatus {
                    state: ReplicaState::Starting,
                    since: Utc::now(),
                    reason: Some("not checked yet".into()),
                    lag: None,
                }),
            }),
        })
    }

    /// Whether requests read the replica now.
    pub fn in_use(&self) -> bool {
        self.inner.in_use.load(Ordering::Relaxed)
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    pub fn horizons(&self) -> &commerce_projections::Horizons {
        &self.inner.horizons
    }

    pub fn status(&self) -> ReplicaStatus {
        self.lock().clone()
    }

    /// A request found the replica unreachable: the next ones read the primary until the watch
    /// finds it healthy again.
    pub fn lost(&self, reason: String) {
        if self.in_use() {
            self.set(ReplicaState::Down, Some(reason), None);
        }
    }

    /// Looks at the replica every [`CHECK_EVERY`] until `shutdown`, switching reads between it
    /// and the primary.
    pub async fn watch(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut probe = Probe {
            connection: None,
            unreplayed: VecDeque::new(),
        };
        let mut every = tokio::time::interval(CHECK_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = every.tick() => {}
            }
            match probe.check(&self.inner).await {
                Verdict::Down(reason) => self.set(ReplicaState::Down, Some(reason), None),
                Verdict::Replaying { lag } => {
                    metrics::gauge!("commerce_read_replica_lag_seconds").set(lag.as_secs_f64());
                    // Back only once well within the bound, so that it does not flap at it.
                    let bound = if self.in_use() {
                        self.inner.max_lag
                    } else {
                        self.inner.max_lag / 2
                    };
                    if lag <= bound {
                        self.set(ReplicaState::Up, None, Some(lag));
                    } else {
                        let reason = format!(
                            "{:.1}s behind the primary (COMMERCE_READ_MAX_LAG is {:.1}s)",
                            lag.as_secs_f64(),
                            self.inner.max_lag.as_secs_f64()
                        );
                        self.set(ReplicaState::Lagging, Some(reason), Some(lag));
                    }
                }
            }
        }
        if let Some(connection) = probe.connection.take() {
            let _ = connection.close().await;
        }
        self.inner.pool.close().await;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReplicaStatus> {
        // The status is a plain value: one poisoned by a panic elsewhere is still whole.
        self.inner
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records the replica's state. A change is logged, once: at WARN when reads leave the
    /// replica for the primary, at INFO otherwise.
    fn set(&self, state: ReplicaState, reason: Option<String>, lag: Option<Duration>) {
        let mut status = self.lock();
        let was = status.state;
        let since = status.since;
        status.lag = lag.or(status.lag);
        status.reason = reason.clone();
        if was == state {
            return;
        }
        status.state = state;
        let up = state == ReplicaState::Up;
        if up != (was == ReplicaState::Up) {
            status.since = Utc::now();
        }
        drop(status);
        self.inner.in_use.store(up, Ordering::Relaxed);
        metrics::gauge!("commerce_read_replica_in_use").set(if up { 1.0 } else { 0.0 });
        let reason = reason.unwrap_or_default();
        let replica = state.as_str();
        match (was, state) {
            (ReplicaState::Starting, ReplicaState::Up) => {
                tracing::info!("the read replica is up: the query routes read it")
            }
            (_, ReplicaState::Up) => {
                let seconds = (Utc::now() - since).num_seconds().max(0);
                tracing::info!(
                    fallback_seconds = seconds,
                    "the read replica is back: the query routes read it again"
                )
            }
            (ReplicaState::Up | ReplicaState::Starting, _) => tracing::warn!(
                replica,
                %reason,
                "the query routes read the primary instead of the read replica"
            ),
            _ => tracing::info!(
                replica,
                %reason,
                "the query routes still read the primary instead of the read replica"
            ),
        }
    }
}

/// The watch's own connection to the replica (not one of the pool's, which requests may all
/// hold), and the primary's WAL positions the replica had not replayed at the last look.
struct Probe {
    connection: Option<PgConnection>,
    /// When the primary had flushed how far, oldest first.
    unreplayed: VecDeque<(Instant, i64)>,
}

impl Probe {
    async fn check(&mut self, inner: &Inner) -> Verdict {
        // The primary first: the replica then has to have replayed at least that far to be
        // caught up. A primary that does not answer says nothing new of the lag.
        let flushed = tokio::time::timeout(
            CHECK_TIMEOUT,
            sqlx::query_scalar::<_, i64>(PRIMARY_WAL).fetch_one(&inner.primary),
        )
        .await;
        if let Ok(Ok(flushed)) = flushed {
            let newer = self
                .unreplayed
                .back()
                .is_none_or(|(_, last)| flushed > *last);
            if newer {
                if self.unreplayed.len() == MAX_MARKS {
                    self.unreplayed.pop_front();
                }
                self.unreplayed.push_back((Instant::now(), flushed));
            }
        }
        let replayed = match tokio::time::timeout(CHECK_TIMEOUT, self.replayed(inner)).await {
            Ok(Ok(replayed)) => replayed,
            Ok(Err(error)) => {
                self.connection = None;
                // The error alone: its sources repeat what it says.
                return Verdict::Down(error.to_string());
            }
            Err(_) => {
                self.connection = None;
                return Verdict::Down(format!("no answer within {}s", CHECK_TIMEOUT.as_secs_f64()));
            }
        };
        while self
            .unreplayed
            .front()
            .is_some_and(|(_, flushed)| *flushed <= replayed)
        {
            self.unreplayed.pop_front();
        }
        let lag = self
            .unreplayed
            .front()
            .map_or(Duration::ZERO, |(at, _)| at.elapsed());
        Verdict::Replaying { lag }
    }

    async fn replayed(&mut self, inner: &Inner) -> anyhow::Result<i64> {
        let connection = match &mut self.connection {
            Some(connection) => connection,
            empty => empty.insert(inner.pool.connect_options().connect().await?),
        };
        Ok(sqlx::query_scalar::<_, i64>(REPLAYED_WAL)
            .fetch_one(connection)
            .await?)
    }
}

/// How a read failed on the replica, when it is the replica's doing rather than the request's.
pub enum Trouble {
    /// The replica cannot be reached (down, restarting, out of connections).
    Unreachable(String),
    /// The replica cancelled the query to replay WAL it conflicted with (a hot standby's
    /// `canceling statement due to conflict with recovery`): trying again is enough.
    RecoveryConflict,
}

/// What `error` (a read's failure on the replica) says of the replica.
pub fn trouble(error: &anyhow::Error) -> Option<Trouble> {
    let error = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<sqlx::Error>())?;
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Some(Trouble::Unreachable(error.to_string())),
        sqlx::Error::Database(database) => {
            let code = database.code().unwrap_or_default();
            // 08: connection exceptions; 57P: the server shutting down or restarting.
            if code.starts_with("08") || code.starts_with("57P") {
                Some(Trouble::Unreachable(error.to_string()))
            } else if code == "40001" {
                Some(Trouble::RecoveryConflict)
            } else {
                None
            }
        }
        _ => None,
    }
}

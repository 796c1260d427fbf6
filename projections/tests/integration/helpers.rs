//! Each test owns its world: a fresh database (random name, migrated), a fresh namespace (so
//! its own stream and consumers), both removed when the world is dropped.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use async_nats::jetstream;
use commerce_projections::{
    Namespace, Partitioning, Projection, ProjectionConfig, ProjectionRuntime, Relay, RelayConfig,
    StoredEvent,
};
use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long any awaited condition may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

fn postgres_root() -> String {
    std::env::var("TEST_POSTGRES_ROOT")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn init_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info,commerce_projections=debug".into()),
                )
                .with_test_writer()
                .init();
        }
    });
}

pub struct World {
    pub pool: PgPool,
    pub jetstream: jetstream::Context,
    pub namespace: Namespace,
    database: String,
    nats_url: String,
    /// Parent of every background task's token: dropping the world stops them first.
    tasks: CancellationToken,
}

impl World {
    pub async fn new() -> Self {
        Self::on_nats(&nats_url()).await
    }

    /// A world whose bus is the NATS server at `nats_url` (one the test started itself).
    pub async fn on_nats(nats_url: &str) -> Self {
        init_logging();
        let id = Uuid::new_v4().simple().to_string();
        let database = format!("projections_test_{id}");
        let url = format!("{}/{database}", postgres_root());
        commerce_store::db::create_database_if_missing(&url)
            .await
            .unwrap();
        let pool = commerce_store::db::connect(&url, 16).await.unwrap();
        commerce_store::db::migrate(&pool).await.unwrap();
        pool.execute(
            "CREATE TABLE test_counts ( \
               projection text, aggregate_type text, aggregate_id text, \
               count bigint NOT NULL, last_sequence bigint NOT NULL, \
               PRIMARY KEY (projection, aggregate_type, aggregate_id)); \
             CREATE TABLE test_gate (id int); \
             CREATE TABLE test_applied ( \
               applied_order bigserial, projection text, aggregate_type text, aggregate_id text, \
               sequence bigint, PRIMARY KEY (projection, aggregate_type, aggregate_id, sequence))",
        )
        .await
        .unwrap();
        let client = async_nats::connect(nats_url).await.unwrap();
        let jetstream = jetstream::new(client);
        let namespace = Namespace::parse(&format!("t{}", &id[..12])).unwrap();
        Self {
            pool,
            jetstream,
            namespace,
            database,
            nats_url: nats_url.to_owned(),
            tasks: CancellationToken::new(),
        }
    }

    pub fn relay(&self, instance: &str) -> Relay {
        self.relay_with(instance, |_| {})
    }

    /// A relay paced for tests, with `adjust` applied to its configuration.
    pub fn relay_with(&self, instance: &str, adjust: impl FnOnce(&mut RelayConfig)) -> Relay {
        let mut config = RelayConfig {
            poll_interval: Duration::from_millis(200),
            standby_interval: Duration::from_millis(50),
            retry_backoff: Duration::from_millis(100),
            instance: instance.to_owned(),
            ..RelayConfig::default()
        };
        adjust(&mut config);
        Relay::new(
            self.pool.clone(),
            self.jetstream.clone(),
            self.namespace.clone(),
        )
        .with_config(config)
    }

    /// Starts a relay in the background; cancel the token to stop it.
    pub fn spawn_relay(&self, relay: Relay) -> Running {
        let cancel = self.tasks.child_token();
        let task = tokio::spawn(relay.run(cancel.clone()));
        Running { cancel, task }
    }

    /// Starts the projection runtime with `counter` in the background.
    pub fn spawn_projection(&self, counter: Counter) -> Running {
        self.spawn_partitions(counter, Partitioning::default())
    }

    /// Starts a projection runtime running the `partitions` of `counter` in the background,
    /// as one process of several would.
    pub fn spawn_partitions(&self, counter: Counter, partitions: Partitioning) -> Running {
        let cancel = self.tasks.child_token();
        let runtime = ProjectionRuntime::new(
            self.pool.clone(),
            self.jetstream.clone(),
            self.namespace.clone(),
        )
        .with_config(ProjectionConfig {
            idle_tick: Duration::from_millis(20),
            retry_backoff: Duration::from_millis(50),
            partitions,
            ..ProjectionConfig::default()
        })
        .with(counter);
        let task = tokio::spawn(runtime.run(cancel.clone()));
        Running { cancel, task }
    }

    /// Appends one event in its own transaction; returns its position.
    pub async fn append(&self, aggregate_type: &str, aggregate_id: &str, sequence: i64) -> i64 {
        self.append_with(
            aggregate_type,
            aggregate_id,
            sequence,
            json!({ "n": sequence }),
        )
        .await
    }

    pub async fn append_with(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        sequence: i64,
        payload: Value,
    ) -> i64 {
        let mut conn = self.pool.acquire().await.unwrap();
        append_on(&mut conn, aggregate_type, aggregate_id, sequence, payload).await
    }

    /// The stored events of one aggregate, in sequence order.
    pub async fn stored(&self, aggregate_type: &str, aggregate_id: &str) -> Vec<StoredEvent> {
        sqlx::query_as(
            "SELECT aggregate_type, aggregate_id, sequence, position, event_type, event_version, \
                    payload, metadata, recorded_at \
             FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    /// The counter's value for one aggregate (0 when absent).
    pub async fn count(&self, aggregate_type: &str, aggregate_id: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT count FROM test_counts \
             WHERE projection = $1 AND aggregate_type = $2 AND aggregate_id = $3",
        )
        .bind(Counter::NAME)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_optional(&self.pool)
        .await
        .unwrap()
        .unwrap_or(0)
    }

    /// Every event the counter applied, in the order it applied them.
    pub async fn applied(&self) -> Vec<(String, i64)> {
        sqlx::query_as(
            "SELECT aggregate_id, sequence FROM test_applied WHERE projection = $1 \
             ORDER BY applied_order",
        )
        .bind(Counter::NAME)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    pub async fn dead_letter_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM dead_letters")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Messages in the stream; 0 while it does not exist yet.
    pub async fn stream_messages(&self) -> u64 {
        match self
            .jetstream
            .get_stream(self.namespace.stream_name())
            .await
        {
            Ok(mut stream) => stream.info().await.unwrap().state.messages,
            Err(_) => 0,
        }
    }

    /// The `Nats-Msg-Id` of every message in the stream, in stream order.
    pub async fn stream_message_ids(&self) -> Vec<String> {
        let stream = self
            .jetstream
            .get_stream(self.namespace.stream_name())
            .await
            .unwrap();
        let last = stream.get_info().await.unwrap().state.last_sequence;
        let mut ids = Vec::new();
        for sequence in 1..=last {
            let message = stream.get_raw_message(sequence).await.unwrap();
            ids.push(
                message
                    .headers
                    .get("Nats-Msg-Id")
                    .unwrap()
                    .as_str()
                    .to_owned(),
            );
        }
        ids
    }

    /// Publishes `event` as the relay would, under a message id of our choosing.
    pub async fn publish(&self, event: &StoredEvent, message_id: Option<&str>) {
        commerce_projections::stream::ensure(&self.jetstream, &self.namespace, 1)
            .await
            .unwrap();
        let mut message = event.to_message(&self.namespace).unwrap();
        if let Some(id) = message_id {
            message.headers.insert("Nats-Msg-Id", id);
        }
        self.jetstream
            .publish_with_headers(message.subject, message.headers, message.payload)
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// The followed events the counter's watermark covers (`tx_id` below its horizon) that it has
    /// not applied: the watermark must never cover any. One statement, so one snapshot.
    pub async fn unapplied_below_watermark(&self) -> Vec<(String, String, i64)> {
        sqlx::query_as(
            "SELECT e.aggregate_type, e.aggregate_id, e.sequence \
             FROM events e JOIN projection_positions p ON p.name = $1 AND e.tx_id < p.horizon \
             WHERE e.aggregate_type IN ('order', 'cart') AND NOT EXISTS ( \
               SELECT 1 FROM test_applied a WHERE a.projection = $1 \
                 AND a.aggregate_type = e.aggregate_type AND a.aggregate_id = e.aggregate_id \
                 AND a.sequence = e.sequence) \
             ORDER BY e.position",
        )
        .bind(Counter::NAME)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    /// Waits until the counter's watermark passes `position`, checking on every look that it
    /// never covers an event the counter has not applied.
    pub async fn caught_up_honestly(&self, position: i64) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let caught_up = commerce_projections::wait_for_position(
                &self.pool,
                &[Counter::NAME],
                position,
                Duration::ZERO,
            )
            .await
            .unwrap();
            assert_eq!(
                self.unapplied_below_watermark().await,
                [],
                "the watermark covers events the projection has not applied"
            );
            if caught_up {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the projection did not catch up with position {position}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether the counter has applied everything up to `position`, within [`PATIENCE`].
    pub async fn caught_up(&self, position: i64) -> bool {
        commerce_projections::wait_for_position(&self.pool, &[Counter::NAME], position, PATIENCE)
            .await
            .unwrap()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // A test that failed left its tasks running: stop them before removing their world.
        self.tasks.cancel();
        let database = self.database.clone();
        let stream = self.namespace.stream_name();
        let nats_url = self.nats_url.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                if let Ok(client) = async_nats::connect(nats_url).await {
                    jetstream::new(client).delete_stream(&stream).await.ok();
                }
                let admin = format!("{}/postgres", postgres_root());
                if let Ok(mut conn) = PgConnection::connect(&admin).await {
                    conn.execute(
                        format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)").as_str(),
                    )
                    .await
                    .ok();
                }
            });
        });
        cleanup.join().ok();
    }
}

/// Appends one event on `conn` (which may be inside a transaction); returns its position.
pub async fn append_on(
    conn: &mut PgConnection,
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
    payload: Value,
) -> i64 {
    let id = Uuid::now_v7();
    sqlx::query_scalar(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ($1, $2, $3, 'TestHappened', '1', $4, $5) RETURNING position",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(sequence)
    .bind(payload)
    .bind(json!({ "correlation_id": id, "causation_id": id }))
    .fetch_one(conn)
    .await
    .unwrap()
}

/// A background task and its cancellation token.
pub struct Running {
    pub cancel: CancellationToken,
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Cancels the task and waits for it to finish.
    pub async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the task did not stop")
            .unwrap()
            .unwrap();
    }
}

/// Polls `condition` until it holds; panics with `what` after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The test projection: counts events per aggregate and logs each application. It refuses an
/// event that is not above the last sequence it applied for its aggregate (so a duplicate or
/// out-of-order application shows up in `dead_letters`), and, while `poison` is set, any event
/// whose payload has `"poison": true`. An event whose payload has `"divide_by_zero": true`
/// fails in Postgres (`SELECT 1/0`), every time.
///
/// When `gated`, every application first locks `test_gate` (ROW EXCLUSIVE) under a short
/// `lock_timeout`: while the test holds it in SHARE mode, it fails with Postgres's own
/// lock-timeout error (55P03), counted in `transient_failures`. When `drives_sagas`, an event drives the saga named by its
/// aggregate id (a UUID), like the saga trigger's order events.
#[derive(Clone, Default)]
pub struct Counter {
    pub poison: Arc<AtomicBool>,
    pub gated: bool,
    pub transient_failures: Arc<AtomicU32>,
    pub drives_sagas: bool,
}

impl Counter {
    pub const NAME: &'static str = "counter";

    pub fn poisonable() -> Self {
        Self {
            poison: Arc::new(AtomicBool::new(true)),
            ..Self::default()
        }
    }
}

impl Projection for Counter {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["order", "cart"]
    }

    fn saga_of(&self, event: &StoredEvent) -> Option<Uuid> {
        self.drives_sagas
            .then(|| event.aggregate_id.parse().ok())
            .flatten()
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        if self.poison.load(Ordering::Acquire) && event.payload.get("poison") == Some(&json!(true))
        {
            anyhow::bail!("poisoned event {}", event.message_id());
        }
        if event.payload.get("divide_by_zero") == Some(&json!(true)) {
            sqlx::query("SELECT 1/0").execute(&mut *conn).await?;
        }
        if self.gated {
            sqlx::query("SET LOCAL lock_timeout = '20ms'")
                .execute(&mut *conn)
                .await?;
            let read = sqlx::query("LOCK TABLE test_gate IN ROW EXCLUSIVE MODE")
                .execute(&mut *conn)
                .await;
            if let Err(error) = read {
                self.transient_failures.fetch_add(1, Ordering::AcqRel);
                return Err(error.into());
            }
        }
        let counted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO test_counts (projection, aggregate_type, aggregate_id, count, last_sequence) \
             VALUES ($1, $2, $3, 1, $4) \
             ON CONFLICT (projection, aggregate_type, aggregate_id) DO UPDATE \
             SET count = test_counts.count + 1, last_sequence = EXCLUDED.last_sequence \
             WHERE test_counts.last_sequence < EXCLUDED.last_sequence \
             RETURNING count",
        )
        .bind(Self::NAME)
        .bind(&event.aggregate_type)
        .bind(&event.aggregate_id)
        .bind(event.sequence)
        .fetch_optional(&mut *conn)
        .await?;
        anyhow::ensure!(
            counted.is_some(),
            "{} applied out of order or twice",
            event.message_id()
        );
        sqlx::query(
            "INSERT INTO test_applied (projection, aggregate_type, aggregate_id, sequence) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(Self::NAME)
        .bind(&event.aggregate_type)
        .bind(&event.aggregate_id)
        .bind(event.sequence)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

/// A NATS server of the test's own (on a free port, in a temporary directory), for tests that
/// need another configuration than the shared server's. Killed, by its own handle, when dropped.
pub struct NatsServer {
    pub url: String,
    port: u16,
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl NatsServer {
    /// Starts `nats-server -js` with `config` (nats-server configuration text) added.
    pub async fn start(config: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("projections-nats-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("nats.conf"), config).unwrap();
        let server = Self {
            url: format!("nats://127.0.0.1:{port}"),
            port,
            child: Self::spawn(port, &dir),
            dir,
        };
        server.answers().await;
        server
    }

    /// Kills it (our own child) and starts it again on the same port and store.
    pub async fn restart(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
        self.child = Self::spawn(self.port, &self.dir);
        self.answers().await;
    }

    fn spawn(port: u16, dir: &std::path::Path) -> std::process::Child {
        std::process::Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.join("store"))
            .arg("-c")
            .arg(dir.join("nats.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server is installed")
    }

    async fn answers(&self) {
        eventually("the test's NATS server answers", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
        })
        .await;
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

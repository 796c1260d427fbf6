//! The query role on a streaming replica (`COMMERCE_READ_DATABASE_URL`): a Postgres primary and
//! a `pg_basebackup -R` replica of it, both started by the test, under the engine as separate
//! processes. The query routes read the replica, read-your-writes holds there, and when the
//! replica is killed mid-load the query role reads the primary: no 5xx but 503 with
//! `Retry-After`, and reads keep working while it is down, then use it again once it is back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};

use crate::client::{Answer, Api};
use crate::cluster::{Cluster, Setup};
use crate::postgres::TempPostgres;

/// The name the query role's replica sessions carry (`commerce_query_api::replica`).
const REPLICA_APPLICATION: &str = "commerce-query-replica";
/// Sellers restocking their own SKU, and reading it back, at once.
const WRITERS: usize = 4;
/// Writes sampled for read-your-writes on the replica, over all writers.
const SAMPLED_WRITES: usize = 300;
/// How long anything the test waits for may take before it is a failure.
const PATIENCE: Duration = Duration::from_secs(60);

/// One read of the load, as answered.
struct Read {
    path: String,
    status: StatusCode,
    retry_after: bool,
    /// When the request was sent.
    sent: Instant,
    /// The write it had to show, when it had one to: seen or not.
    saw_write: Option<bool>,
}

impl std::fmt::Debug for Read {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let retry_after = if self.retry_after {
            " (Retry-After)"
        } else {
            ""
        };
        let write = match self.saw_write {
            Some(true) => ", showed its write",
            Some(false) => ", did NOT show its write",
            None => "",
        };
        write!(f, "GET {}: {}{retry_after}{write}", self.path, self.status)
    }
}

/// A seller with one SKU of its own: every restock of it is theirs, so after `n` acknowledged
/// restocks of one unit its stock on hand is `n`.
#[derive(Clone)]
struct Writer {
    token: String,
    sku: String,
}

impl Writer {
    /// Restocks one unit: the new event's position.
    async fn restock(&self, api: &Api) -> i64 {
        let path = format!("/v1/inventory/{}/restock", self.sku);
        match api
            .command(
                Method::POST,
                &path,
                Some(&self.token),
                json!({"quantity": 1}),
            )
            .await
        {
            Answer::Ok {
                position: Some(position),
                ..
            } => position,
            other => panic!("restocking {}: {other:?}", self.sku),
        }
    }
}

/// GETs `path` on the query role, as it answers (no retry): with `X-Min-Position` when given.
async fn read(
    http: &reqwest::Client,
    query_url: &str,
    path: &str,
    token: &str,
    min_position: Option<i64>,
) -> (StatusCode, bool, Value) {
    let mut request = http.get(format!("{query_url}{path}")).bearer_auth(token);
    if let Some(position) = min_position {
        request = request.header("x-min-position", position.to_string());
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: no answer: {e}"));
    let status = response.status();
    let retry_after = response.headers().contains_key("retry-after");
    let body = response.json().await.unwrap_or(Value::Null);
    (status, retry_after, body)
}

/// Restocks and reads back with `X-Min-Position`, `rounds` times or until `stop`, recording
/// every read; `/v1/me` too (its personal data opened with keys from the primary).
async fn write_and_read(
    api: Api,
    http: reqwest::Client,
    writer: Writer,
    rounds: usize,
    stop: Arc<AtomicBool>,
    reads: Arc<Mutex<Vec<Read>>>,
) {
    let inventory = format!("/v1/inventory/{}", writer.sku);
    let mut restocked = current_stock(&http, &api.query_url, &writer).await;
    for _ in 0..rounds {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let position = writer.restock(&api).await;
        restocked += 1;
        let sent = Instant::now();
        let (status, retry_after, body) = read(
            &http,
            &api.query_url,
            &inventory,
            &writer.token,
            Some(position),
        )
        .await;
        let saw_write = (status == StatusCode::OK).then(|| body["on_hand"] == restocked);
        let mut recorded = vec![Read {
            path: inventory.clone(),
            status,
            retry_after,
            sent,
            saw_write,
        }];
        let sent = Instant::now();
        let (status, retry_after, _) =
            read(&http, &api.query_url, "/v1/me", &writer.token, None).await;
        recorded.push(Read {
            path: "/v1/me".into(),
            status,
            retry_after,
            sent,
            saw_write: None,
        });
        reads.lock().unwrap().extend(recorded);
    }
}

/// The SKU's stock on hand now (0 before its first restock).
async fn current_stock(http: &reqwest::Client, query_url: &str, writer: &Writer) -> i64 {
    let path = format!("/v1/inventory/{}", writer.sku);
    let (status, _, body) = read(http, query_url, &path, &writer.token, None).await;
    match status {
        StatusCode::OK => body["on_hand"].as_i64().expect("on_hand is a number"),
        StatusCode::NOT_FOUND => 0,
        other => panic!("GET {path}: {other}: {body}"),
    }
}

/// Polls the query role's `/health/ready` until its `read_replica` is `state` (answering 200
/// all along: the replica's state never makes the role unready): the last body.
async fn replica_state_becomes(http: &reqwest::Client, query_url: &str, state: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let response = http
            .get(format!("{query_url}/health/ready"))
            .send()
            .await
            .expect("the query role answers /health/ready");
        let status = response.status();
        let body: Value = response.json().await.expect("a JSON body");
        assert_eq!(
            status,
            StatusCode::OK,
            "the query role is not ready: {body}"
        );
        if body["read_replica"] == state {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "the read replica never became {state}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last query of each of the query role's sessions on `server`'s database `database`.
async fn replica_sessions(server: &TempPostgres, database: &str) -> Vec<String> {
    let mut connection = PgConnection::connect(&server.url("postgres"))
        .await
        .expect("the test connects to the replica");
    let queries = sqlx::query_scalar(
        "SELECT query FROM pg_stat_activity WHERE application_name = $1 AND datname = $2",
    )
    .bind(REPLICA_APPLICATION)
    .bind(database)
    .fetch_all(&mut connection)
    .await
    .expect("pg_stat_activity is readable");
    let _ = connection.close().await;
    queries
}

/// Every read answered 200 (showing its write, when it had one to show) or 503 with
/// `Retry-After`: never another 5xx.
fn assert_no_failures(reads: &[Read]) {
    let failed: Vec<&Read> = reads
        .iter()
        .filter(|r| {
            let unavailable = r.status == StatusCode::SERVICE_UNAVAILABLE && r.retry_after;
            !(r.status == StatusCode::OK || unavailable) || r.saw_write == Some(false)
        })
        .collect();
    assert!(failed.is_empty(), "reads that failed: {failed:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_query_role_reads_the_replica_and_the_primary_while_the_replica_is_down() {
    let primary = TempPostgres::start();
    let mut replica = primary.replica();
    let (primary_url, replica_url) = (primary.url("postgres"), replica.url("postgres"));
    let mut cluster = Cluster::start_setup(Setup {
        server_url: Some(&primary_url),
        read_replica_url: Some(&replica_url),
        ..Setup::default()
    })
    .await;
    let api = Api::new(cluster.command_url.clone(), cluster.query_url.clone());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    let mut writers = Vec::new();
    for n in 0..WRITERS {
        let (_, token) = api.account("seller").await;
        let sku = format!(
            "REPLICA-{n}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        api.product(&token, &sku, 1000).await;
        writers.push(Writer { token, sku });
    }
    replica_state_becomes(&http, &cluster.query_url, "up").await;

    // Read-your-writes on the replica, for every sampled write.
    let reads = Arc::new(Mutex::new(Vec::new()));
    let never = Arc::new(AtomicBool::new(false));
    let load = |rounds: usize, stop: &Arc<AtomicBool>| -> Vec<_> {
        writers
            .iter()
            .map(|writer| {
                tokio::spawn(write_and_read(
                    api.clone(),
                    http.clone(),
                    writer.clone(),
                    rounds,
                    stop.clone(),
                    reads.clone(),
                ))
            })
            .collect()
    };
    let tasks = load(SAMPLED_WRITES / WRITERS, &never);
    for task in tasks {
        task.await.unwrap();
    }
    {
        let reads = reads.lock().unwrap();
        let sampled: Vec<&Read> = reads.iter().filter(|r| r.saw_write.is_some()).collect();
        assert_eq!(
            sampled.len(),
            SAMPLED_WRITES,
            "every sampled write was read"
        );
        let unseen: Vec<&&Read> = sampled
            .iter()
            .filter(|r| r.saw_write != Some(true))
            .collect();
        assert!(
            unseen.is_empty(),
            "reads with X-Min-Position that did not show their write: {unseen:#?}"
        );
        assert_no_failures(&reads);
    }
    let health = replica_state_becomes(&http, &cluster.query_url, "up").await;
    assert!(health.get("read_replica_fallback").is_none(), "{health}");
    let sessions = replica_sessions(&replica, &cluster.database).await;
    assert!(
        sessions.iter().any(|q| q.contains("rm_")),
        "the query role's sessions on the replica read no read model: {sessions:?}"
    );

    // The replica killed mid-load.
    reads.lock().unwrap().clear();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = load(usize::MAX, &stop);
    let wait_for_reads = |count: usize| {
        let reads = reads.clone();
        async move {
            let deadline = Instant::now() + PATIENCE;
            while reads.lock().unwrap().len() < count {
                assert!(Instant::now() < deadline, "the load stalled");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    wait_for_reads(40).await;
    replica.kill9();
    let killed_at = Instant::now();
    let health = replica_state_becomes(&http, &cluster.query_url, "down").await;
    assert!(
        health["read_replica_fallback"]["reason"].is_string(),
        "{health}"
    );
    let fallen_back_at = Instant::now();
    let before = reads.lock().unwrap().len();
    wait_for_reads(before + 80).await;

    // Back: the query role reads the replica again.
    replica.restart(&["-c", "hot_standby=on"]);
    replica_state_becomes(&http, &cluster.query_url, "up").await;
    let before = reads.lock().unwrap().len();
    wait_for_reads(before + 40).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }

    let reads = std::mem::take(&mut *reads.lock().unwrap());
    assert_no_failures(&reads);
    // Every one, on the primary while the replica was down, then on the replica once back.
    let after_fallback: Vec<&Read> = reads.iter().filter(|r| r.sent >= fallen_back_at).collect();
    assert!(
        after_fallback.iter().all(|r| r.status == StatusCode::OK),
        "reads sent once the query role had fallen back to the primary: {after_fallback:#?}"
    );
    let unavailable = reads
        .iter()
        .filter(|r| r.status == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    eprintln!(
        "replica: {} reads around the kill, {unavailable} answered 503 (in flight on the \
         replica when it died: {:?} after the kill the primary was read)",
        reads.len(),
        fallen_back_at - killed_at
    );
    assert!(
        replica_sessions(&replica, &cluster.database)
            .await
            .iter()
            .any(|q| q.contains("rm_")),
        "the query role did not read the replica again once it was back"
    );
    let crashed = cluster.crashed();
    assert!(crashed.is_empty(), "engine processes died: {crashed:?}");
}

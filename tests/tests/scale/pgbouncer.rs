//! PgBouncer in transaction mode in front of the command and query roles (the projections and
//! sagas roles keep direct sessions: LISTEN and advisory locks). Each test that needs one starts
//! its own PgBouncer (Debian's 1.18: no protocol-level prepared statements) on a free port, as a
//! child it alone signals, with a `pgbouncer.ini` in a scratch directory: every database name is
//! passed to the same name on the machine's Postgres, at most 4 server sessions each.

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Row};
use uuid::Uuid;

use crate::binary::commerce_binary;
use crate::client::{Answer, Api};
use crate::cluster::{Cluster, Setup};
use crate::workload::checkout_body;

/// Server sessions PgBouncer opens per database: fewer than the clients' pools, so that
/// transactions of different clients share sessions.
const SERVER_SESSIONS: u32 = 4;

/// A PgBouncer of the test's own; killed (only its PID) and its directory removed on drop.
struct PgBouncer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl PgBouncer {
    fn start() -> Self {
        let server = PgConnectOptions::from_str(&commerce_store::db::database_url_from_env())
            .expect("DATABASE_URL parses");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!(
            "commerce-pgbouncer-{}",
            &Uuid::new_v4().simple().to_string()[..12]
        ));
        std::fs::create_dir_all(&dir).expect("the scratch directory is created");
        let user = server.get_username();
        std::fs::write(dir.join("users.txt"), format!("\"{user}\" \"\"\n"))
            .expect("the auth file is written");
        let ini = format!(
            "[databases]\n\
             * = host={host} port={server_port}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {auth}\n\
             admin_users = {user}\n\
             pool_mode = transaction\n\
             max_client_conn = 200\n\
             default_pool_size = {SERVER_SESSIONS}\n",
            host = server.get_host(),
            server_port = server.get_port(),
            auth = dir.join("users.txt").display(),
        );
        let ini_path = dir.join("pgbouncer.ini");
        std::fs::write(&ini_path, ini).expect("pgbouncer.ini is written");
        let log = File::create(dir.join("pgbouncer.log")).expect("the log file opens");
        let mut command = Command::new(pgbouncer_binary());
        // PgBouncer refuses to run as root; `-u` has it switch user itself, so that the PID we
        // hold stays PgBouncer's.
        if running_as_root() {
            command.args(["-u", "postgres"]);
        }
        let child = command
            .arg(&ini_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log file is cloned"))
            .stderr(log)
            .spawn()
            .expect("pgbouncer starts");
        let mut bouncer = PgBouncer { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = bouncer.child.try_wait() {
                panic!("pgbouncer exited ({status}): {}", bouncer.log());
            }
            assert!(
                Instant::now() < deadline,
                "pgbouncer did not listen: {}",
                bouncer.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        bouncer
    }

    /// `database` through this PgBouncer, flagged as a pooler for the engine.
    fn url(&self, database: &str, application_name: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}?pgbouncer=true&application_name={application_name}",
            self.port
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }

    /// `SHOW <what>` on PgBouncer's admin console, as rows of column name → text. The console
    /// speaks the simple query protocol only, and refuses `extra_float_digits` at start-up.
    async fn show(&self, what: &str) -> Vec<std::collections::HashMap<String, String>> {
        let mut console = PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username("postgres")
            .database("pgbouncer")
            .extra_float_digits(None)
            .statement_cache_capacity(0)
            .connect()
            .await
            .expect("the admin console answers");
        let rows = sqlx::raw_sql(&format!("SHOW {what}"))
            .fetch_all(&mut console)
            .await
            .expect("SHOW answers");
        let _ = console.close().await;
        rows.iter()
            .map(|row| {
                use sqlx::Column;
                row.columns()
                    .iter()
                    .map(|column| {
                        // The simple query protocol answers in text, whatever the column's type.
                        let value = row
                            .try_get_unchecked::<Option<String>, _>(column.ordinal())
                            .ok()
                            .flatten()
                            .unwrap_or_default();
                        (column.name().to_owned(), value)
                    })
                    .collect()
            })
            .collect()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("pgbouncer: log kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn pgbouncer_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("pgbouncer"))
        .find(|candidate| candidate.exists());
    on_path
        .or_else(|| Some(PathBuf::from("/usr/sbin/pgbouncer")).filter(|p| p.exists()))
        .expect("pgbouncer is installed (`scripts/services.sh up` installs it)")
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// The statements of many clients, interleaved over fewer server sessions, each answer checked:
/// sqlx prepares a statement in one round trip and runs it in the next, and PgBouncer may hand
/// the second to another session (where another client's statement of the same shape waits).
#[tokio::test]
async fn concurrent_statements_through_pgbouncer_each_get_their_own_answer() {
    let bouncer = PgBouncer::start();
    let pool = commerce_store::db::connect(&bouncer.url("postgres", "concurrency"), 16)
        .await
        .expect("the pool connects through pgbouncer");
    let tasks: Vec<_> = (0..16_i64)
        .map(|task| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut wrong = Vec::new();
                for i in 0..150_i64 {
                    let value = task * 1_000 + i;
                    // Two statements of one shape (same parameter types), and a third.
                    let answer: Result<i64, sqlx::Error> = match i % 3 {
                        0 => {
                            sqlx::query_scalar("SELECT $1::int8 + 0")
                                .bind(value)
                                .fetch_one(&pool)
                                .await
                        }
                        1 => {
                            sqlx::query_scalar("SELECT $1::int8 * 1")
                                .bind(value)
                                .fetch_one(&pool)
                                .await
                        }
                        _ => {
                            sqlx::query_scalar("SELECT length($2::text)::int8 + $1 - 4")
                                .bind(value)
                                .bind("four")
                                .fetch_one(&pool)
                                .await
                        }
                    };
                    match answer {
                        Ok(got) if got == value => {}
                        other => wrong.push(format!("{value}: {other:?}")),
                    }
                }
                wrong
            })
        })
        .collect();
    let mut wrong = Vec::new();
    for task in tasks {
        wrong.extend(task.await.expect("the task runs"));
    }
    pool.close().await;
    assert!(
        wrong.is_empty(),
        "{} of 2400 statements went wrong, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
}

/// The journey of a sale with the command and query roles through PgBouncer in transaction
/// mode and the others direct: a seller lists and restocks a product, a buyer signs up, fills a
/// cart and checks out, the order is confirmed, the seller ships it.
#[tokio::test]
async fn a_sale_goes_through_with_the_apis_behind_pgbouncer() {
    let bouncer = PgBouncer::start();
    let through_bouncer = |role: &str, database: &str| match role {
        "command-api" | "query-api" => {
            vec![(
                "DATABASE_URL",
                bouncer.url(database, &format!("commerce-{role}")),
            )]
        }
        _ => Vec::new(),
    };
    let cluster = Cluster::start_setup(Setup {
        role_env: Some(&through_bouncer),
        ..Setup::default()
    })
    .await;
    let api = Api::new(cluster.command_url.clone(), cluster.query_url.clone());

    let (_, seller) = api.account("seller").await;
    let sku = format!("BNC-{}", &Uuid::new_v4().simple().to_string()[..8]).to_uppercase();
    api.product(&seller, &sku, 1_500).await;
    assert!(
        api.restock(&seller, &sku, 5).await,
        "the restock is refused"
    );
    let (_, buyer) = api.account("buyer").await;
    let cart_line = format!("{}/v1/me/cart/items/{sku}", api.command_url);
    let answer = api
        .send(
            Method::PUT,
            cart_line,
            Some(&buyer),
            Some(&json!({"quantity": 2})),
            None,
            None,
        )
        .await;
    assert!(matches!(answer, Answer::Ok { .. }), "{answer:?}");
    let (order_id, placed_at) = match api
        .command(
            Method::POST,
            "/v1/me/cart/checkout",
            Some(&buyer),
            checkout_body("tok_ok"),
        )
        .await
    {
        Answer::Ok { body, position } => (
            body["order_id"].as_str().expect("an order id").to_owned(),
            position,
        ),
        other => panic!("checking out: {other:?}"),
    };
    assert_eq!(
        wait_for_status(&api, &order_id, &buyer, placed_at, "confirmed").await,
        "confirmed"
    );

    let shipped_at = match api
        .command(
            Method::POST,
            &format!("/v1/orders/{order_id}/shipments"),
            Some(&seller),
            json!({"carrier": "DHL", "tracking_number": "JJD0001"}),
        )
        .await
    {
        Answer::Ok { position, .. } => position,
        other => panic!("shipping: {other:?}"),
    };
    assert!(shipped_at.is_some(), "a write answers with its position");
    match api
        .query(&format!("/v1/orders/{order_id}"), &buyer, shipped_at)
        .await
    {
        Answer::Ok { body, .. } => assert_eq!(body["status"], "shipped", "{body}"),
        other => panic!("reading the shipped order: {other:?}"),
    }

    // Both APIs' connections were PgBouncer's clients, and their transactions went through it.
    let clients = bouncer.show("CLIENTS").await;
    for role in ["command-api", "query-api"] {
        let name = format!("commerce-{role}");
        assert!(
            clients
                .iter()
                .any(|c| c["database"] == cluster.database && c["application_name"] == name),
            "no client of pgbouncer is the {role}: {clients:?}"
        );
    }
    let stats = bouncer.show("STATS").await;
    let ours = stats
        .iter()
        .find(|s| s["database"] == cluster.database)
        .unwrap_or_else(|| panic!("no stats for {}: {stats:?}", cluster.database));
    let transactions: u64 = ours["total_xact_count"].parse().expect("a count");
    assert!(
        transactions >= 20,
        "only {transactions} transactions went through pgbouncer"
    );
    // The sessions PgBouncer hands out carry the engine's bounds, from the database's defaults
    // (PgBouncer refuses them as startup options).
    let through_bouncer = commerce_store::db::connect(&bouncer.url(&cluster.database, "check"), 1)
        .await
        .expect("connecting through pgbouncer");
    for (setting, expected) in [
        ("idle_in_transaction_session_timeout", "10s"),
        ("lock_timeout", "5s"),
    ] {
        let value: String = sqlx::query_scalar("SELECT current_setting($1)")
            .bind(setting)
            .fetch_one(&through_bouncer)
            .await
            .expect("reading a setting");
        assert_eq!(value, expected, "{setting} through pgbouncer");
    }
    through_bouncer.close().await;
}

/// Reads the order (after `position`) until its status is `status`; returns the last status.
async fn wait_for_status(
    api: &Api,
    order_id: &str,
    token: &str,
    position: Option<i64>,
    status: &str,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = match api
            .query(&format!("/v1/orders/{order_id}"), token, position)
            .await
        {
            Answer::Ok { body, .. } => body["status"].as_str().unwrap_or_default().to_owned(),
            other => panic!("reading order {order_id}: {other:?}"),
        };
        if seen == status || Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A role behind PgBouncer does not migrate (the migrator holds a session advisory lock): on a
/// database not migrated yet it waits, and starts once a direct connection has migrated it.
#[tokio::test]
async fn an_api_role_behind_pgbouncer_waits_for_the_schema() {
    let bouncer = PgBouncer::start();
    let database = format!("commerce_bouncer_{}", Uuid::new_v4().simple());
    let direct_url =
        commerce_store::db::with_database(&commerce_store::db::database_url_from_env(), &database);
    commerce_store::db::create_database_if_missing(&direct_url)
        .await
        .expect("the database is created");
    let _drop_database = DropDatabase(database.clone());
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let log = bouncer.dir.join("query-api.log");
    let mut query_api = ChildGuard(
        Command::new(commerce_binary())
            .args(["serve", "query-api"])
            .env("DATABASE_URL", bouncer.url(&database, "commerce-query-api"))
            .env(
                "COMMERCE_NAMESPACE",
                format!("bouncer_{}", &database[17..29]),
            )
            .env("COMMERCE_BIND", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info")
            .env("COMMERCE_LOG_FORMAT", "json")
            .stdout(File::create(&log).expect("the log opens"))
            .stderr(Stdio::null())
            .spawn()
            .expect("the query role starts"),
    );
    let live = format!("http://127.0.0.1:{port}/health/live");
    let http = reqwest::Client::new();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        query_api
            .0
            .try_wait()
            .expect("the child is there")
            .is_none(),
        "the query role exited: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        http.get(&live).send().await.is_err(),
        "the query role serves before the schema is there"
    );
    let waiting = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(waiting.contains("waiting for the schema"), "{waiting}");

    let migrate = Command::new(commerce_binary())
        .arg("migrate")
        .env("DATABASE_URL", &direct_url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("`commerce migrate` runs");
    assert!(migrate.status.success(), "{migrate:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(&live)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            Instant::now() < deadline,
            "the query role did not start after the migration: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kills (only) its child on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Drops its database on drop.
struct DropDatabase(String);

impl Drop for DropDatabase {
    fn drop(&mut self) {
        crate::cleanup::drop_database(&self.0, None);
    }
}

/// The relay, the projections and the saga workers hold sessions (LISTEN, advisory locks), and
/// the migrator a session lock: given a URL through a pooler, they refuse to start, saying why.
#[tokio::test]
async fn roles_that_hold_sessions_refuse_a_pooled_url() {
    let url = "postgres://postgres@127.0.0.1:1/commerce?pgbouncer=true";
    for args in [
        vec!["serve", "projections"],
        vec!["serve", "sagas"],
        vec!["serve", "all"],
        vec!["migrate"],
    ] {
        let output = Command::new(commerce_binary())
            .args(&args)
            .env("DATABASE_URL", url)
            .env("RUST_LOG", "error")
            .env("COMMERCE_BIND", "127.0.0.1:0")
            .output()
            .expect("the binary runs");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!output.status.success(), "{args:?} started: {said}");
        assert!(said.contains("direct connection"), "{args:?}: {said}");
    }
}

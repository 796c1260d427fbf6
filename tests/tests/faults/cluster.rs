//! The engine as separate processes of the `commerce` binary, with a NATS server (or a 3-node
//! NATS cluster, [`Cluster::start_on_nats_cluster`]), a sandbox payment gateway and a database
//! of their own. Every process is a child of this test: only
//! their PIDs are ever signalled, and dropping the [`Cluster`] kills them all (even on panic),
//! drops the database and removes the scratch directory (kept, with the logs, when the test
//! failed).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;

use crate::binary::commerce_binary;

/// Signs tokens in every engine process, so a token survives the restart of the one that issued it.
const JWT_SECRET: &str = "fault-injection-suite-secret-0123456789abcdef";

/// How long an authorisation may go unanswered; a saga's lease is this plus 5 s
/// (`WorkerConfig::for_payment_timeout`).
pub const PAYMENT_TIMEOUT: Duration = Duration::from_secs(3);
/// The lease a saga worker holds a saga for, as the engine derives it.
pub const SAGA_LEASE: Duration = Duration::from_secs(3 + 5);

/// The NATS servers' process names when the engine runs on a NATS cluster; each is also the
/// server's name in the cluster (what stream and consumer infos call their leader and replicas).
pub const NATS_NODES: [&str; 3] = ["nats-1", "nats-2", "nats-3"];

/// Ports nobody listens on right now (held together, so they differ).
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("a bound address").port())
        .collect()
}

/// Environment of one role's own, given the role's name and the cluster's database name.
pub type RoleEnv<'a> = dyn Fn(&str, &str) -> Vec<(&'static str, String)> + 'a;

/// One process the test runs, and how to run it again.
struct Process {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
    stopped: bool,
    starts: u32,
}

impl Process {
    fn spawn(&mut self) {
        assert!(self.child.is_none(), "spawning a process that runs");
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("the log file opens");
        self.starts += 1;
        let _ = writeln!(log, "==== start #{} ====", self.starts);
        let stderr: File = log.try_clone().expect("the log file is cloned");
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr);
        if let Ok(path) = std::env::var("PATH") {
            command.env("PATH", path);
        }
        self.child = Some(command.spawn().unwrap_or_else(|e| {
            panic!("starting {} {:?}: {e}", self.program.display(), self.args)
        }));
        self.stopped = false;
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, and reap it.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stopped = false;
    }

    fn signal(&mut self, signal: &str) {
        let pid = self.pid().expect("signalling a process that runs");
        let status = Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .status()
            .expect("`kill` runs");
        assert!(status.success(), "kill -s {signal} {pid} failed");
    }

    /// Whether it exited on its own (a crash), with its status.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

/// The engine's roles, the NATS server and the sandbox gateway, by name.
pub struct Cluster {
    pub dir: PathBuf,
    pub database: String,
    pub database_url: String,
    pub namespace: String,
    /// The (first) NATS server's client port.
    pub nats_port: u16,
    /// Every NATS server, as the engine's `NATS_URL` lists them.
    pub nats_url: String,
    pub sandbox_url: String,
    pub command_url: String,
    pub query_url: String,
    processes: BTreeMap<&'static str, Process>,
    http: reqwest::Client,
    keep_dir: bool,
    /// The database is on a Postgres server the test started (and removes): not dropped here.
    on_test_server: bool,
}

/// The engine roles this suite runs: name and `commerce serve` role.
pub const ROLES: [(&str, &str); 6] = [
    ("command-api", "command-api"),
    ("query-api", "query-api"),
    ("projections-1", "projections"),
    ("projections-2", "projections"),
    ("sagas-1", "sagas"),
    ("sagas-2", "sagas"),
];

/// What a [`Cluster`] runs on and with, beyond the defaults.
#[derive(Default)]
pub struct Setup<'a> {
    /// More environment for every role.
    pub env: &'a [(&'a str, &'a str)],
    /// More environment for one role, after the rest: `role_env(name, database)` for role
    /// `name` (of [`ROLES`]), given the cluster's database (e.g. a `DATABASE_URL` of its own).
    pub role_env: Option<&'a RoleEnv<'a>>,
    /// NATS as a 3-node JetStream cluster ([`NATS_NODES`]) rather than one server.
    pub nats_cluster: bool,
    /// A Postgres server the test started, instead of `DATABASE_URL`'s (the test removes it).
    pub server_url: Option<&'a str>,
    /// A streaming replica of it for the query role (`COMMERCE_READ_DATABASE_URL`).
    pub read_replica_url: Option<&'a str>,
}

impl Cluster {
    /// Starts NATS, the sandbox gateway and every role, each waited for until it answers.
    pub async fn start() -> Cluster {
        Self::start_with(&[]).await
    }

    /// As [`Cluster::start`], with more environment for every role.
    pub async fn start_with(extra_env: &[(&str, &str)]) -> Cluster {
        Self::start_setup(Setup {
            env: extra_env,
            ..Setup::default()
        })
        .await
    }

    /// As [`Cluster::start_with`], on a JetStream cluster of three NATS servers ([`NATS_NODES`])
    /// that `NATS_URL` lists; waits until the cluster can hold a stream on all three.
    pub async fn start_on_nats_cluster(extra_env: &[(&str, &str)]) -> Cluster {
        Self::start_setup(Setup {
            env: extra_env,
            nats_cluster: true,
            ..Setup::default()
        })
        .await
    }

    /// Starts the NATS server (or the nodes of a cluster), the sandbox and every role as
    /// `setup` says.
    pub async fn start_setup(setup: Setup<'_>) -> Cluster {
        let nats: &[&'static str] = if setup.nats_cluster {
            &NATS_NODES
        } else {
            &["nats"]
        };
        let extra_env = setup.env;
        let on_test_server = setup.server_url.is_some();
        let server_url = setup
            .server_url
            .map_or_else(commerce_store::db::database_url_from_env, str::to_owned);
        let read_replica_url = setup.read_replica_url;
        let binary = commerce_binary();
        let run = Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("commerce-faults-{}", &run[..12]));
        std::fs::create_dir_all(&dir).expect("the scratch directory is created");
        let database = format!("commerce_faults_{run}");
        let database_url = commerce_store::db::with_database(&server_url, &database);
        let read_database_url =
            read_replica_url.map(|url| commerce_store::db::with_database(url, &database));
        let namespace = format!("faults_{}", &run[..12]);
        // The sandbox, the roles, then each NATS server's client and cluster ports.
        let ports = free_ports(1 + ROLES.len() + 2 * nats.len());
        let sandbox_port = ports[0];
        let role_ports = &ports[1..=ROLES.len()];
        let (client_ports, route_ports) = ports[1 + ROLES.len()..].split_at(nats.len());
        let nats_port = client_ports[0];
        let sandbox_url = format!("http://127.0.0.1:{sandbox_port}");
        let nats_url = client_ports
            .iter()
            .map(|port| format!("nats://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        let routes = route_ports
            .iter()
            .map(|port| format!("nats://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");

        let mut processes = BTreeMap::new();
        for ((name, client_port), route_port) in nats.iter().zip(client_ports).zip(route_ports) {
            std::fs::create_dir_all(dir.join(name)).expect("the NATS store's directory is created");
            let mut args: Vec<String> = vec![
                "-a".into(),
                "127.0.0.1".into(),
                "-p".into(),
                client_port.to_string(),
                "-js".into(),
                "-sd".into(),
                dir.join(name).display().to_string(),
            ];
            if nats.len() > 1 {
                args.extend([
                    "--server_name".into(),
                    (*name).to_owned(),
                    "--cluster_name".into(),
                    format!("faults-{}", &run[..12]),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{route_port}"),
                    // Every node's route, its own included (a server skips itself): any node
                    // may start, or restart, first.
                    "--routes".into(),
                    routes.clone(),
                ]);
            }
            processes.insert(
                *name,
                Process {
                    program: PathBuf::from("nats-server"),
                    args,
                    env: vec![],
                    port: *client_port,
                    log: dir.join(format!("{name}.log")),
                    child: None,
                    stopped: false,
                    starts: 0,
                },
            );
        }
        processes.insert(
            "sandbox",
            Process {
                program: binary.clone(),
                args: vec![
                    "sandbox-gateway".into(),
                    "--bind".into(),
                    format!("127.0.0.1:{sandbox_port}"),
                ],
                env: vec![("RUST_LOG".into(), "info".into())],
                port: sandbox_port,
                log: dir.join("sandbox.log"),
                child: None,
                stopped: false,
                starts: 0,
            },
        );
        for ((name, role), port) in ROLES.iter().zip(role_ports) {
            let pool = match *role {
                "command-api" => 10,
                "query-api" => 4,
                _ => 6,
            };
            let read_replica = read_database_url
                .as_ref()
                .filter(|_| *role == "query-api")
                .map(|url| ("COMMERCE_READ_DATABASE_URL".to_owned(), url.clone()));
            let env = [
                ("DATABASE_URL", database_url.clone()),
                ("NATS_URL", nats_url.clone()),
                ("COMMERCE_NAMESPACE", namespace.clone()),
                ("COMMERCE_BIND", format!("127.0.0.1:{port}")),
                ("COMMERCE_JWT_SECRET", JWT_SECRET.to_owned()),
                ("COMMERCE_PAYMENT_GATEWAY_URL", sandbox_url.clone()),
                (
                    "COMMERCE_PAYMENT_TIMEOUT",
                    format!("{}s", PAYMENT_TIMEOUT.as_secs()),
                ),
                ("COMMERCE_DB_POOL", pool.to_string()),
                ("COMMERCE_LOG_FORMAT", "json".to_owned()),
                ("RUST_LOG", "info".to_owned()),
                // The workload comes from one address and a few accounts, far faster than
                // any one client: the per-caller limit must not shape what is measured.
                ("COMMERCE_RATE_LIMIT_PER_SECOND", "1000000".to_owned()),
                ("COMMERCE_RATE_LIMIT_BURST", "1000000".to_owned()),
            ];
            processes.insert(
                *name,
                Process {
                    program: binary.clone(),
                    args: vec!["serve".into(), (*role).into()],
                    env: env
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), v.clone()))
                        .chain(read_replica)
                        .chain(
                            extra_env
                                .iter()
                                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
                        )
                        .chain(
                            setup
                                .role_env
                                .map(|role_env| role_env(name, &database))
                                .unwrap_or_default()
                                .into_iter()
                                .map(|(k, v)| (k.to_owned(), v)),
                        )
                        .collect(),
                    port: *port,
                    log: dir.join(format!("{name}.log")),
                    child: None,
                    stopped: false,
                    starts: 0,
                },
            );
        }
        let command_url = format!("http://127.0.0.1:{}", processes["command-api"].port);
        let query_url = format!("http://127.0.0.1:{}", processes["query-api"].port);
        let mut cluster = Cluster {
            dir,
            database,
            database_url: database_url.clone(),
            namespace,
            nats_port,
            nats_url: nats_url.clone(),
            sandbox_url,
            command_url,
            query_url,
            processes,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .expect("an HTTP client"),
            // `FAULTS_KEEP=1` keeps every cluster's logs, whatever the outcome.
            keep_dir: std::env::var("FAULTS_KEEP").is_ok(),
            on_test_server,
        };

        // The schema first, once, so the roles do not all race to migrate.
        let migrate = Command::new(&binary)
            .arg("migrate")
            .env("DATABASE_URL", &database_url)
            .env("RUST_LOG", "warn")
            .output()
            .expect("`commerce migrate` runs");
        assert!(
            migrate.status.success(),
            "commerce migrate failed: {}",
            String::from_utf8_lossy(&migrate.stderr)
        );
        for name in nats {
            cluster.start_process(name).await;
        }
        if nats.len() > 1 {
            wait_for_jetstream_cluster(&nats_url, &cluster.namespace, nats.len()).await;
        }
        cluster.start_process("sandbox").await;
        for (name, _) in ROLES {
            cluster.start_process(name).await;
        }
        cluster
    }

    pub async fn pool(&self) -> PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&self.database_url)
            .await
            .expect("the test connects to its database")
    }

    /// Starts `name` and waits until it answers (TCP for a NATS server, `/health/live`
    /// otherwise).
    pub async fn start_process(&mut self, name: &str) {
        let process = self.processes.get_mut(name).expect("a known process");
        process.spawn();
        let port = process.port;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let up = if name.starts_with("nats") {
                TcpStream::connect(("127.0.0.1", port)).is_ok()
            } else {
                let path = if name == "sandbox" {
                    "/v1/payments"
                } else {
                    "/health/live"
                };
                self.http
                    .get(format!("http://127.0.0.1:{port}{path}"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            };
            if up {
                return;
            }
            let process = self.processes.get_mut(name).expect("a known process");
            if let Some(status) = process.exited() {
                panic!(
                    "{name} exited ({status}) while starting; see {}",
                    process.log.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not answer on port {port} within 60 s; see {}",
                process.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `kill -9` of `name` (a child of this test), reaped.
    pub fn kill9(&mut self, name: &str) {
        self.processes
            .get_mut(name)
            .expect("a known process")
            .kill9();
    }

    /// SIGSTOP: the process is frozen mid-whatever-it-was-doing.
    pub fn freeze(&mut self, name: &str) {
        let process = self.processes.get_mut(name).expect("a known process");
        process.signal("STOP");
        process.stopped = true;
    }

    /// SIGCONT: it resumes exactly where it was.
    pub fn thaw(&mut self, name: &str) {
        let process = self.processes.get_mut(name).expect("a known process");
        process.signal("CONT");
        process.stopped = false;
    }

    /// Every process that died without being told to, with how.
    pub fn crashed(&mut self) -> Vec<String> {
        self.processes
            .iter_mut()
            .filter_map(|(name, p)| p.exited().map(|status| format!("{name} exited: {status}")))
            .collect()
    }

    pub fn pid(&self, name: &str) -> Option<u32> {
        self.processes[name].pid()
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.processes[name].log.clone()
    }

    /// Keep the scratch directory (logs, NATS store) after the test.
    pub fn keep(&mut self) {
        self.keep_dir = true;
    }
}

/// Waits until the NATS cluster at `url` holds a stream on `nodes` servers: its servers have
/// found each other and elected a JetStream meta leader. A probe stream is created, then
/// deleted.
async fn wait_for_jetstream_cluster(url: &str, namespace: &str, nodes: usize) {
    let servers: Vec<&str> = url.split(',').collect();
    let client = async_nats::connect(servers)
        .await
        .expect("the test connects to its NATS cluster");
    let jetstream = async_nats::jetstream::new(client);
    let name = format!("{}_PROBE", namespace.to_ascii_uppercase());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let created = jetstream
            .create_stream(async_nats::jetstream::stream::Config {
                name: name.clone(),
                subjects: vec![format!("{namespace}.probe")],
                num_replicas: nodes,
                ..Default::default()
            })
            .await;
        match created {
            Ok(_) => {
                jetstream
                    .delete_stream(&name)
                    .await
                    .expect("the probe stream is deleted");
                return;
            }
            Err(error) => assert!(
                Instant::now() < deadline,
                "the NATS cluster at {url} could not hold a stream on {nodes} servers within 60 s: {error}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for process in self.processes.values_mut() {
            if process.stopped && process.child.is_some() {
                process.signal("CONT");
            }
            process.kill9();
        }
        let keep = self.keep_dir || std::thread::panicking();
        if keep {
            eprintln!(
                "fault suite: logs and the NATS store kept in {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        if self.on_test_server {
            return;
        }
        if std::env::var("FAULTS_KEEP").is_ok() {
            eprintln!("fault suite: database {} kept (FAULTS_KEEP)", self.database);
            return;
        }
        crate::cleanup::drop_database(&self.database, None);
    }
}

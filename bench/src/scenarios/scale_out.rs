//! Scale-out: the engine as separate processes of the `commerce` binary, 1 then 2 of each role
//! (`command-api`, `query-api`, `projections`, `sagas`) sharing one sandbox payment gateway,
//! each run on a scratch database and JetStream namespace of its own (both removed afterwards).
//! Each run measures:
//! - cart commands: `PUT /v1/me/cart/items/{sku}`, closed loop at [`CART_CONNECTIONS`],
//!   round-robin over the command processes;
//! - checkouts: [`CHECKOUT_BUYERS`] buyers in a closed loop, each filling its cart, checking
//!   out on a command process and reading the order on a query process until it is confirmed;
//! - after each load, how long the read side takes to catch up;
//! - during each load, the CPU of every process (utime + stime from `/proc/<pid>/stat`) as a
//!   percentage of one core, and of the whole machine.
//!
//! The figures compare the two runs: on a machine with few cores, twice the processes share the
//! same cores (and Postgres and NATS run on them too), so the ratio shows the machine's limit,
//! not the design's. The per-process CPU shows where the cores went.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use reqwest::Method;
use serde::Serialize;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use tokio::time::Instant;

use super::commands::set_quantity_op;
use super::{caught_up_on, Bench};
use crate::client::{checkout_body, Api, Shop};
use crate::engine::{Engine, JWT_SECRET};
use crate::load::{closed_loop, for_each, Counter, Status};
use crate::report::Row;
use crate::stats::Summary;

const NAME: &str = "scale-out";
/// The roles a run starts, each with its Postgres pool per process: two of each, this
/// harness's own engine and its pools stay under a stock `max_connections = 100`.
const ROLES: [(&str, u32); 4] = [
    ("command-api", 8),
    ("query-api", 4),
    ("projections", 6),
    ("sagas", 6),
];
/// The payment gateway every saga process calls.
const GATEWAY: &str = "sandbox-gateway";
/// Products in each run's catalog (each stocked with [`crate::client::STOCK`] units): a few,
/// so that checkouts meet on the same inventory as real ones do on best-sellers.
const PRODUCTS: usize = 20;
/// Concurrent cart commands.
const CART_CONNECTIONS: usize = 32;
/// Buyers checking out at once, each waiting for its order before the next: enough that the
/// checkouts keep the cores busy despite the wait for the saga.
const CHECKOUT_BUYERS: usize = 32;
/// How long a process may take to answer `/health/ready`.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Pauses between reads of an order not yet confirmed: these, then the last one again.
const POLLS_MS: [u64; 3] = [20, 50, 100];
/// An order not confirmed this long after its checkout counts as a failure.
const ORDER_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the read side may take to catch up after a load.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);
/// Clock ticks per second of `/proc/<pid>/stat` (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// The `commerce` binary: `COMMERCE_BIN`, else the one next to this executable (the same
/// cargo profile builds both: `make bench` builds it first).
fn commerce_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("COMMERCE_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("finding this executable")?;
    let dir = exe.parent().context("this executable has no directory")?;
    let binary = dir.join(format!("commerce{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        binary.is_file(),
        "{} is missing: build it with `cargo build --release --bin commerce` (`make bench` \
         does), or set COMMERCE_BIN",
        binary.display()
    );
    Ok(binary)
}

/// Ports nobody listens on right now (held together, so they differ).
fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("finding free ports")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// One engine process of a run, a child of this one.
struct Process {
    role: &'static str,
    /// Which of its role's processes, from 1.
    index: usize,
    port: u16,
    child: Child,
    log: PathBuf,
}

impl Process {
    fn name(&self) -> String {
        format!("{}-{}", self.role, self.index)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Fails, with the end of its log, when the process has exited.
    fn alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                anyhow::bail!("{} exited ({status}): {}", self.name(), log_tail(&self.log))
            }
            Err(error) => Err(error).with_context(|| format!("watching {}", self.name())),
        }
    }

    /// Its CPU time so far, in clock ticks.
    fn cpu_ticks(&self) -> Option<u64> {
        process_cpu_ticks(&format!("/proc/{}/stat", self.child.id()))
    }

    /// Its peak resident set, in MiB (`VmHWM` of `/proc/<pid>/status`).
    fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(kib / 1024.0)
    }
}

/// The last lines of a process's log, for an error message.
fn log_tail(path: &Path) -> String {
    const TAIL: u64 = 2000;
    let Ok(mut file) = std::fs::File::open(path) else {
        return "(no log)".to_owned();
    };
    let length = file.metadata().map_or(0, |m| m.len());
    let _ = file.seek(SeekFrom::Start(length.saturating_sub(TAIL)));
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    if text.trim().is_empty() {
        "(empty log)".to_owned()
    } else {
        text.trim().to_owned()
    }
}

/// utime + stime (fields 14 and 15) of a `/proc/…/stat` file, in clock ticks.
fn process_cpu_ticks(stat: &str) -> Option<u64> {
    let text = std::fs::read_to_string(stat).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let after_name = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `after_name` starts at field 3.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// All cores' ticks and their idle ones so far (`/proc/stat`).
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // idle + iowait
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((fields.iter().sum(), idle))
}

/// One run's processes, database and namespace. Dropping it kills the processes; the database
/// and the stream are registered with the bench's engine, which removes them when it stops if
/// [`Deployment::stop`] could not.
struct Deployment<'e> {
    engine: &'e Engine,
    scale: usize,
    dir: PathBuf,
    database: String,
    database_url: String,
    namespace: String,
    stream: String,
    /// A small pool of the harness's own on the run's database.
    pool: Option<PgPool>,
    processes: Vec<Process>,
}

impl<'e> Deployment<'e> {
    /// A scratch database, namespace and log directory for `scale` processes of each role.
    async fn prepare(engine: &'e Engine, scale: usize) -> anyhow::Result<Self> {
        let (database, database_url) = engine.scratch_database(&format!("scale{scale}")).await?;
        let namespace = format!("{}_x{scale}", engine.namespace);
        let stream = commerce_projections::Namespace::parse(&namespace)?.stream_name();
        engine.scratch_stream(&stream);
        let dir = std::env::temp_dir().join(format!("commerce-bench-{namespace}"));
        let deployment = Self {
            engine,
            scale,
            dir,
            database,
            database_url,
            namespace,
            stream,
            pool: None,
            processes: Vec::new(),
        };
        std::fs::create_dir_all(&deployment.dir)
            .with_context(|| format!("creating {}", deployment.dir.display()))?;
        Ok(deployment)
    }

    /// Migrates the database once (so the roles do not all race to), then starts the gateway
    /// and every role's processes, each waited for until it is ready.
    async fn launch(&mut self, binary: &Path) -> anyhow::Result<()> {
        let migrate = {
            let mut command = Command::new(binary);
            command
                .arg("migrate")
                .env_clear()
                .env("DATABASE_URL", &self.database_url)
                .env("RUST_LOG", "warn");
            if let Some(path) = std::env::var_os("PATH") {
                command.env("PATH", path);
            }
            tokio::task::spawn_blocking(move || command.output())
                .await
                .context("running `commerce migrate`")?
                .with_context(|| format!("running {} migrate", binary.display()))?
        };
        anyhow::ensure!(
            migrate.status.success(),
            "commerce migrate failed: {}",
            String::from_utf8_lossy(&migrate.stderr)
        );
        self.pool = Some(
            PgPoolOptions::new()
                .max_connections(4)
                .connect_with(
                    PgConnectOptions::from_str(&self.database_url)?.disable_statement_logging(),
                )
                .await
                .context("connecting to the run's database")?,
        );

        let ports = free_ports(1 + ROLES.len() * self.scale)?;
        let gateway_url = format!("http://127.0.0.1:{}", ports[0]);
        self.spawn(
            binary,
            GATEWAY,
            1,
            ports[0],
            &[
                "sandbox-gateway",
                "--bind",
                &format!("127.0.0.1:{}", ports[0]),
            ],
            &[],
        )?;
        let mut ports = ports[1..].iter();
        for (role, pool) in ROLES {
            for index in 1..=self.scale {
                let port = *ports.next().context("a port per process")?;
                let env = [
                    ("DATABASE_URL", self.database_url.clone()),
                    ("NATS_URL", self.engine.nats_url().to_owned()),
                    ("COMMERCE_NAMESPACE", self.namespace.clone()),
                    ("COMMERCE_BIND", format!("127.0.0.1:{port}")),
                    ("COMMERCE_JWT_SECRET", JWT_SECRET.to_owned()),
                    ("COMMERCE_PAYMENT_GATEWAY_URL", gateway_url.clone()),
                    ("COMMERCE_DB_POOL", pool.to_string()),
                    // The load comes from one address and a few accounts: the per-caller
                    // limit is for real clients, not for a load generator.
                    ("COMMERCE_RATE_LIMIT_PER_SECOND", "1000000000".to_owned()),
                    ("COMMERCE_RATE_LIMIT_BURST", "1000000000".to_owned()),
                ];
                self.spawn(binary, role, index, port, &["serve", role], &env)?;
            }
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        for i in 0..self.processes.len() {
            self.wait_ready(&http, i).await?;
        }
        Ok(())
    }

    fn spawn(
        &mut self,
        binary: &Path,
        role: &'static str,
        index: usize,
        port: u16,
        args: &[&str],
        env: &[(&str, String)],
    ) -> anyhow::Result<()> {
        let log = self.dir.join(format!("{role}-{index}.log"));
        let stdout =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let stderr = stdout.try_clone()?;
        let mut command = Command::new(binary);
        command
            .args(args)
            .env_clear()
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {} {}", binary.display(), args.join(" ")))?;
        self.processes.push(Process {
            role,
            index,
            port,
            child,
            log,
        });
        Ok(())
    }

    /// Waits until process `i` answers: `/health/ready` for the engine, TCP for the gateway.
    async fn wait_ready(&mut self, http: &reqwest::Client, i: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let process = &mut self.processes[i];
            process.alive()?;
            let ready = if process.role == GATEWAY {
                tokio::net::TcpStream::connect(("127.0.0.1", process.port))
                    .await
                    .is_ok()
            } else {
                http.get(format!("{}/health/ready", process.url()))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            };
            if ready {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} was not ready within {START_TIMEOUT:?}: {}",
                process.name(),
                log_tail(&process.log)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn pool(&self) -> anyhow::Result<&PgPool> {
        self.pool
            .as_ref()
            .context("the run's database is not connected")
    }

    /// API clients for each process of `role`.
    fn apis(&self, role: &str) -> anyhow::Result<Vec<Api>> {
        self.processes
            .iter()
            .filter(|p| p.role == role)
            .map(|p| Api::new(&p.url()))
            .collect()
    }

    /// Fails when any process has exited.
    fn alive(&mut self) -> anyhow::Result<()> {
        self.processes.iter_mut().try_for_each(Process::alive)
    }

    fn cpu(&self) -> CpuSample {
        CpuSample {
            at: Instant::now(),
            processes: self.processes.iter().map(Process::cpu_ticks).collect(),
            bench: process_cpu_ticks("/proc/self/stat"),
            machine: machine_ticks(),
        }
    }

    /// CPU % of one core per process between two samples.
    fn cpu_use(&self, before: &CpuSample, after: &CpuSample) -> CpuUse {
        let seconds = (after.at - before.at).as_secs_f64().max(0.001);
        let percent = |a: Option<u64>, b: Option<u64>| {
            let ticks = b?.checked_sub(a?)?;
            Some(ticks as f64 / CLOCK_TICKS_PER_SECOND / seconds * 100.0)
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let machine = match (before.machine, after.machine) {
            (Some((total0, idle0)), Some((total1, idle1))) => {
                let total = total1.saturating_sub(total0).max(1);
                let idle = idle1.saturating_sub(idle0);
                Some((1.0 - idle as f64 / total as f64) * cores as f64 * 100.0)
            }
            _ => None,
        };
        CpuUse {
            seconds,
            processes: self
                .processes
                .iter()
                .enumerate()
                .map(|(i, p)| ProcessCpu {
                    process: p.name(),
                    role: p.role,
                    pid: p.child.id(),
                    percent_of_a_core: percent(before.processes[i], after.processes[i]),
                })
                .collect(),
            bench_percent_of_a_core: percent(before.bench, after.bench),
            machine_busy_percent_of_a_core: machine,
            machine_cores: cores,
        }
    }

    fn kill(&mut self) {
        for process in &mut self.processes {
            let _ = process.child.kill();
            let _ = process.child.wait();
        }
        self.processes.clear();
    }

    /// Stops the processes, then removes the stream, the database and the logs.
    async fn stop(mut self) -> anyhow::Result<()> {
        self.kill();
        if let Some(pool) = self.pool.take() {
            pool.close().await;
        }
        let mut problems = Vec::new();
        if let Err(error) = self.engine.drop_scratch_stream(&self.stream).await {
            problems.push(format!("{error:#}"));
        }
        if let Err(error) = self.engine.drop_scratch_database(&self.database).await {
            problems.push(format!("{error:#}"));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        anyhow::ensure!(problems.is_empty(), "{}", problems.join("; "));
        Ok(())
    }
}

impl Drop for Deployment<'_> {
    fn drop(&mut self) {
        self.kill();
    }
}

struct CpuSample {
    at: Instant,
    processes: Vec<Option<u64>>,
    bench: Option<u64>,
    machine: Option<(u64, u64)>,
}

#[derive(Debug, Serialize)]
struct ProcessCpu {
    process: String,
    role: &'static str,
    pid: u32,
    percent_of_a_core: Option<f64>,
}

/// Where the cores went during one load.
#[derive(Debug, Serialize)]
struct CpuUse {
    seconds: f64,
    processes: Vec<ProcessCpu>,
    /// This process: the load generator (and the bench's own engine, idle meanwhile).
    bench_percent_of_a_core: Option<f64>,
    /// Every core's busy time (Postgres, NATS and anything else on the machine included), as
    /// % of one core: at most `machine_cores` × 100.
    machine_busy_percent_of_a_core: Option<f64>,
    machine_cores: usize,
}

impl CpuUse {
    /// `command-api 52+48, …; bench 40; machine 190 of 200`: per role, each process's %.
    fn note(&self) -> String {
        let mut parts = Vec::new();
        for role in std::iter::once(GATEWAY).chain(ROLES.iter().map(|(r, _)| *r)) {
            let each: Vec<String> = self
                .processes
                .iter()
                .filter(|p| p.role == role)
                .map(|p| {
                    p.percent_of_a_core
                        .map_or("?".into(), |c| format!("{c:.0}"))
                })
                .collect();
            parts.push(format!("{role} {}", each.join("+")));
        }
        let mut note = parts.join(", ");
        if let Some(bench) = self.bench_percent_of_a_core {
            note.push_str(&format!("; bench {bench:.0}"));
        }
        if let Some(machine) = self.machine_busy_percent_of_a_core {
            note.push_str(&format!(
                "; machine {machine:.0} of {}",
                self.machine_cores * 100
            ));
        }
        note
    }
}

/// One load of a run.
#[derive(Debug, Serialize)]
struct Phase {
    #[serde(flatten)]
    summary: Summary,
    cpu: CpuUse,
    /// From the end of the load until the relay and every projection had passed its last event.
    read_side_caught_up_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    read_side_error: Option<String>,
}

#[derive(Debug, Serialize)]
struct ProcessInfo {
    process: String,
    pid: u32,
    port: u16,
    peak_rss_mib: Option<f64>,
}

/// Everything one run measured.
#[derive(Debug, Serialize)]
struct Run {
    processes_per_role: usize,
    carts: usize,
    cart_warm_up: Summary,
    cart_commands: Phase,
    checkout_buyers: usize,
    /// Fill the cart, check out, read the order until confirmed: one cycle per request.
    checkouts: Phase,
    processes: Vec<ProcessInfo>,
}

/// Runs `load` on the deployment, sampling CPU around it, then waits for the read side.
async fn phase<F>(deployment: &mut Deployment<'_>, load: F) -> anyhow::Result<Phase>
where
    F: std::future::Future<Output = Summary>,
{
    let before = deployment.cpu();
    let summary = load.await;
    let after = deployment.cpu();
    let cpu = deployment.cpu_use(&before, &after);
    deployment.alive()?;
    let (read_side_caught_up_seconds, read_side_error) =
        match caught_up_on(deployment.pool()?, &deployment.namespace, CATCH_UP_TIMEOUT).await {
            Ok(done) => (Some(done.projections.as_secs_f64()), None),
            Err(error) => (None, Some(format!("{error:#}"))),
        };
    Ok(Phase {
        summary,
        cpu,
        read_side_caught_up_seconds,
        read_side_error,
    })
}

/// One buyer's checkout: fills the cart with `sku` on `commands`, checks out, and reads the
/// order on `queries` (first waiting for the checkout's position) until it is confirmed.
async fn checkout_cycle(commands: &Api, queries: &Api, buyer: &str, sku: &str) -> Status {
    let filled = Api::send(
        commands
            .request(
                Method::PUT,
                &format!("/v1/me/cart/items/{sku}"),
                Some(buyer),
            )
            .json(&json!({"quantity": 1})),
    )
    .await?;
    if !filled.ok() {
        return Ok(filled.status);
    }
    let sent = Instant::now();
    let answer = Api::send(
        commands
            .request(Method::POST, "/v1/me/cart/checkout", Some(buyer))
            .json(&checkout_body()),
    )
    .await?;
    if answer.status != 202 {
        return Ok(answer.status);
    }
    let order_id = answer.json()?["order_id"]
        .as_str()
        .context("a checkout response without order_id")?
        .to_owned();
    let mut min_position = answer.header_i64("x-event-position");
    let path = format!("/v1/orders/{order_id}");
    for attempt in 0_usize.. {
        let mut request = queries.request(Method::GET, &path, Some(buyer));
        if let Some(position) = min_position.take() {
            request = request.header("x-min-position", position);
        }
        let order = Api::send(request).await?;
        match order.status {
            200 => match order.json()?["status"].as_str() {
                Some("confirmed") => return Ok(200),
                Some("cancelled") => anyhow::bail!("an order was cancelled"),
                _ => {}
            },
            // Not in the read model yet.
            404 | 503 => {}
            status => return Ok(status),
        }
        anyhow::ensure!(
            sent.elapsed() < ORDER_TIMEOUT,
            "an order not confirmed within {ORDER_TIMEOUT:?}"
        );
        let pause = POLLS_MS[attempt.min(POLLS_MS.len() - 1)];
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    unreachable!("the loop above returns")
}

/// Starts `scale` processes of each role, measures, and removes everything.
async fn run_at_scale(bench: &Bench<'_>, binary: &Path, scale: usize) -> anyhow::Result<Run> {
    eprintln!("  {scale}× each role: starting the processes");
    let mut deployment = Deployment::prepare(bench.engine, scale).await?;
    let measured = match deployment.launch(binary).await {
        Ok(()) => measure(bench, &mut deployment).await,
        Err(error) => Err(error),
    };
    let stopped = deployment.stop().await;
    let run = measured?;
    stopped?;
    Ok(run)
}

async fn measure(bench: &Bench<'_>, deployment: &mut Deployment<'_>) -> anyhow::Result<Run> {
    let scale = deployment.scale;
    let sizes = &bench.sizes;
    let commands = deployment.apis("command-api")?;
    let queries = deployment.apis("query-api")?;
    let first = deployment
        .processes
        .iter()
        .find(|p| p.role == "command-api")
        .context("no command process")?
        .url();
    let shop = Shop::open_at(
        &first,
        deployment.pool()?.clone(),
        bench.engine.jwt.clone(),
        PRODUCTS,
    )
    .await
    .context("opening the shop (seller and catalog)")?;
    let skus = Arc::new(shop.skus.clone());

    let carts = Arc::new(shop.buyers(sizes.buyers).await?);
    let ops: Vec<_> = commands
        .iter()
        .map(|api| set_quantity_op(api.clone(), carts.clone(), skus.clone()))
        .collect();
    let ops = Arc::new(ops);
    // Request `n` goes to command process `n mod k`.
    let op = move |n: u64| (ops[(n % ops.len() as u64) as usize])(n);
    let op = Arc::new(op);
    let counter = Counter::default();
    eprintln!(
        "  {scale}× each role: one command on each of {} carts",
        carts.len()
    );
    let cart_warm_up = for_each(64, carts.len(), &counter, |n| op(n)).await;
    anyhow::ensure!(
        cart_warm_up.ok as usize == carts.len(),
        "warm-up commands failed: {}",
        cart_warm_up.failures()
    );
    eprintln!(
        "  {scale}× each role: cart commands, {CART_CONNECTIONS} connections, {:?}",
        sizes.run
    );
    let load_op = op.clone();
    let cart_commands = phase(
        deployment,
        closed_loop(CART_CONNECTIONS, sizes.run, &counter, move |n| load_op(n)),
    )
    .await?;

    eprintln!(
        "  {scale}× each role: checkouts, {CHECKOUT_BUYERS} buyers, {:?}",
        sizes.run
    );
    // Each cycle takes a buyer of its own (no two cycles share a cart) and gives it back.
    let idle_buyers = Arc::new(Mutex::new(shop.buyers(CHECKOUT_BUYERS).await?));
    let (commands, queries) = (Arc::new(commands), Arc::new(queries));
    let checkouts = phase(
        deployment,
        closed_loop(CHECKOUT_BUYERS, sizes.run, &Counter::default(), move |n| {
            let (idle_buyers, commands, queries, skus) = (
                idle_buyers.clone(),
                commands.clone(),
                queries.clone(),
                skus.clone(),
            );
            async move {
                let take = || {
                    idle_buyers
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .pop()
                };
                let buyer = take().context("no idle buyer")?;
                let k = n as usize;
                let result = checkout_cycle(
                    &commands[k % commands.len()],
                    &queries[k % queries.len()],
                    &buyer,
                    &skus[k % skus.len()],
                )
                .await;
                idle_buyers
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(buyer);
                result
            }
        }),
    )
    .await?;

    let processes = deployment
        .processes
        .iter()
        .map(|p| ProcessInfo {
            process: p.name(),
            pid: p.child.id(),
            port: p.port,
            peak_rss_mib: p.peak_rss_mib(),
        })
        .collect();
    Ok(Run {
        processes_per_role: scale,
        carts: carts.len(),
        cart_warm_up,
        cart_commands,
        checkout_buyers: CHECKOUT_BUYERS,
        checkouts,
        processes,
    })
}

/// The rows of one run; the 2× ones compare with the 1× run.
fn rows(bench: &mut Bench<'_>, run: &Run, one: Option<&Run>) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let scale = run.processes_per_role;
    let limit = format!("on {cores} cores the ratio shows this machine's limit, not the design's");
    for (what, unit, phase, base) in [
        (
            "cart commands",
            "cmd",
            &run.cart_commands,
            one.map(|o| &o.cart_commands),
        ),
        (
            "checkouts confirmed",
            "order",
            &run.checkouts,
            one.map(|o| &o.checkouts),
        ),
    ] {
        let mut row = Row::from_summary(
            NAME,
            format!("{scale}× each role: {what}"),
            unit,
            &phase.summary,
        );
        if unit == "order" {
            row = row.note("latency: fill cart, check out, see it confirmed");
        }
        if let Some(base) = base {
            let ratio = (base.summary.per_second > 0.0)
                .then(|| phase.summary.per_second / base.summary.per_second);
            row = row.ratio(ratio, "1× each role").note(&limit);
        }
        match (phase.read_side_caught_up_seconds, &phase.read_side_error) {
            (Some(seconds), _) => {
                row = row.note(format!("read side caught up {seconds:.1} s after"))
            }
            (None, Some(error)) => row = row.note(error),
            (None, None) => {}
        }
        bench.report.row(row);
        bench.report.row(
            Row::new(NAME, format!("{scale}× each role: CPU, {what}"), "")
                .note(format!("% of a core: {}", phase.cpu.note())),
        );
    }
}

pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<()> {
    let binary = commerce_binary()?;
    let mut runs: Vec<Run> = Vec::new();
    for scale in [1, 2] {
        let run = run_at_scale(bench, &binary, scale).await?;
        rows(bench, &run, runs.first());
        runs.push(run);
        // Kept after each run, so that a failure of the next leaves this one's figures.
        bench.report.detail(
            NAME,
            json!({"binary": binary, "roles": ROLES, "note":
                "the same machine runs 1, then 2 processes of each role: the ratio shows this \
                 machine's limit (its cores, shared with Postgres and NATS), not the design's",
                "runs": runs}),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_ticks() {
        assert!(process_cpu_ticks("/proc/self/stat").is_some());
        assert!(machine_ticks().is_some_and(|(total, idle)| total >= idle));
    }
}

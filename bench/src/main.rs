//! `commerce-bench`: measures the engine against this machine's own limits, in one run.
//!
//! It starts an engine in this process (its own runtime, database and JetStream namespace, all
//! removed afterwards), drives it over HTTP with keep-alive clients, prints a table and writes
//! everything to `bench/results/<timestamp>.json`. Nothing here asserts a target: the figures
//! are for reading, each next to the limit it should be compared with.

mod client;
mod engine;
mod load;
mod report;
mod scenarios;
mod stats;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use serde_json::json;

use crate::client::Shop;
use crate::engine::{Engine, EngineOptions};
use crate::report::Report;
use crate::scenarios::{Bench, Scenario, Sizes};

/// JSON-heavy work (decoding events, folding read models) allocates a great deal: mimalloc
/// spends far less time on it than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "commerce-bench",
    about = "Load generator: the engine's figures next to this machine's limits"
)]
struct Args {
    /// Smaller sizes: about 2–3 minutes instead of up to 15.
    #[arg(long)]
    quick: bool,
    /// Only these scenarios (repeat the flag or separate with commas); all by default.
    #[arg(long, value_enum, value_delimiter = ',')]
    scenario: Vec<Scenario>,
    /// The Postgres server; a fresh database is created on it for the run.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/commerce"
    )]
    database_url: String,
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Worker threads of the engine's runtime (default: one per core).
    #[arg(long)]
    engine_threads: Option<usize>,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 2)]
    load_threads: usize,
    /// Connections in the engine's Postgres pool.
    #[arg(long, default_value_t = 32)]
    db_pool: u32,
    /// Saga worker loops in the engine.
    #[arg(long, default_value_t = 1)]
    saga_workers: usize,
    /// What the engine runs; `command-api` alone shows the command path without the read side
    /// and the sagas competing for the cores (only the command scenarios make sense then).
    #[arg(long, value_enum, default_value = "all")]
    role: commerce::app::Role,
    /// Products in the catalog (each stocked with a million units).
    #[arg(long, default_value_t = 50)]
    products: usize,
    /// Where the JSON report goes.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    out_dir: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The engine's own log lines (its phases, its warnings), on stderr, when asked for.
    if std::env::var_os("RUST_LOG").is_some() {
        commerce::telemetry::init_cli_logging();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.load_threads.max(1))
        .thread_name("load")
        .enable_all()
        .build()
        .context("building the load generator's runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut selected = if args.scenario.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.scenario.clone()
    };
    selected.sort();
    selected.dedup();
    let sizes = Sizes::new(args.quick);

    eprintln!(
        "starting an engine ({} run)",
        if args.quick { "quick" } else { "full" }
    );
    let engine = Engine::start(EngineOptions {
        database_url: args.database_url.clone(),
        nats_url: args.nats_url.clone(),
        threads: args.engine_threads.unwrap_or(cores).max(1),
        db_pool: args.db_pool,
        saga_workers: args.saga_workers,
        role: args.role,
    })
    .await?;
    eprintln!(
        "engine on {} (database {}, namespace {})",
        engine.base_url, engine.database, engine.namespace
    );

    let mut report = Report::new(args.quick);
    let outcome = tokio::select! {
        outcome = measure(&engine, &args, sizes, &selected, &mut report, cores) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    report.finished_at = Some(chrono::Utc::now());

    println!();
    print!("{}", report.table());
    match report.write(&args.out_dir) {
        Ok(path) => println!("\nwritten to {}", path.display()),
        Err(error) => eprintln!("could not write the report: {error:#}"),
    }
    eprintln!("stopping the engine and removing its database and streams");
    let stopped = engine.stop().await;
    outcome?;
    stopped
}

async fn measure(
    engine: &Engine,
    args: &Args,
    sizes: Sizes,
    selected: &[Scenario],
    report: &mut Report,
    cores: usize,
) -> anyhow::Result<()> {
    machine(engine, report, cores, args, &sizes).await;
    let shop = Shop::open(engine, args.products)
        .await
        .context("opening the shop (seller and catalog)")?;
    let mut bench = Bench {
        engine,
        shop,
        sizes,
        report,
        command_max: None,
    };
    let needs_commit_rate = selected.iter().any(|s| {
        matches!(
            s,
            Scenario::Commands | Scenario::HotSku | Scenario::Checkout
        )
    });
    if needs_commit_rate && !selected.contains(&Scenario::Limits) {
        eprintln!("▶ limits (Postgres only: the ratios need it)");
        if let Err(error) = scenarios::limits::postgres_only(&mut bench).await {
            fail(&mut bench, Scenario::Limits, error);
        }
    }
    for &scenario in selected {
        eprintln!("▶ {}", scenario.name());
        let result = match scenario {
            Scenario::Limits => scenarios::limits::run(&mut bench).await,
            Scenario::Commands => scenarios::commands::run(&mut bench).await,
            Scenario::HotSku => scenarios::hot_sku::run(&mut bench).await,
            Scenario::Checkout => scenarios::checkout::run(&mut bench).await,
            Scenario::Lag => scenarios::lag::run(&mut bench).await,
            Scenario::Rebuild => scenarios::rebuild::run(&mut bench).await,
            Scenario::History => scenarios::history::run(&mut bench).await,
            Scenario::NatsReplicas => scenarios::nats_replicas::run(&mut bench).await,
            Scenario::ScaleOut => scenarios::scale_out::run(&mut bench).await,
        };
        if let Err(error) = result {
            fail(&mut bench, scenario, error);
        }
        // Whatever the scenario left for the read side is not the next one's load.
        let standing = scenarios::read_side(engine).await;
        match scenarios::caught_up(engine, Duration::from_secs(120)).await {
            Ok(drain) => {
                let seconds = drain.projections.as_secs_f64();
                if seconds > 1.0 {
                    eprintln!("  the read side took {seconds:.1} s to catch up");
                    if let Ok(standing) = standing {
                        bench
                            .report
                            .read_side_behind
                            .insert(scenario.name(), standing);
                    }
                }
                bench
                    .report
                    .read_side_drain_seconds
                    .insert(scenario.name(), seconds);
            }
            Err(error) => eprintln!("  {error:#}"),
        }
    }
    Ok(())
}

fn fail(bench: &mut Bench<'_>, scenario: Scenario, error: anyhow::Error) {
    eprintln!("  {} failed: {error:#}", scenario.name());
    bench
        .report
        .errors
        .insert(scenario.name(), format!("{error:#}"));
}

/// What the figures were measured on.
async fn machine(engine: &Engine, report: &mut Report, cores: usize, args: &Args, sizes: &Sizes) {
    let m = &mut report.machine;
    m.insert("cores".into(), json!(cores));
    m.insert(
        "engine_threads".into(),
        json!(args.engine_threads.unwrap_or(cores)),
    );
    m.insert("load_threads".into(), json!(args.load_threads));
    m.insert("engine_db_pool".into(), json!(args.db_pool));
    m.insert("saga_workers".into(), json!(args.saga_workers));
    m.insert("engine_role".into(), json!(format!("{:?}", args.role)));
    m.insert("sizes".into(), json!(sizes));
    if let Some(busy) = cpu_busy(Duration::from_secs(1)).await {
        if busy > 0.25 {
            eprintln!(
                "warning: the cores were {:.0}% busy before starting: something else is running, \
                 and the figures will show it",
                busy * 100.0
            );
        }
        m.insert("cpu_busy_before_start".into(), json!(busy));
    }
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        m.insert("loadavg_at_start".into(), json!(load.trim()));
    }
    for setting in [
        "server_version",
        "synchronous_commit",
        "fsync",
        "wal_sync_method",
        "shared_buffers",
    ] {
        let value: Result<String, _> = sqlx::query_scalar(&format!("SHOW {setting}"))
            .fetch_one(&engine.pool)
            .await;
        if let Ok(value) = value {
            m.insert(format!("postgres_{setting}"), json!(value));
        }
    }
    m.insert(
        "nats_version".into(),
        json!(engine.nats.server_info().version),
    );
    if let Ok(output) = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
    {
        m.insert(
            "git_commit".into(),
            json!(String::from_utf8_lossy(&output.stdout).trim()),
        );
    }
}

/// The fraction of all cores' time spent busy over `window` (Linux), before anything starts.
async fn cpu_busy(window: Duration) -> Option<f64> {
    let (total0, idle0) = scenarios::scale_out::machine_ticks()?;
    tokio::time::sleep(window).await;
    let (total1, idle1) = scenarios::scale_out::machine_ticks()?;
    let total = total1.checked_sub(total0)?.max(1);
    let idle = idle1.checked_sub(idle0)?;
    Some(1.0 - idle as f64 / total as f64)
}

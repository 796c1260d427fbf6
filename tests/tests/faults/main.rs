//! A fault-injection suite: the engine as separate processes (command API, query API, two
//! projections, two saga workers, a sandbox payment gateway of its own, a NATS server of its
//! own), buyers and sellers working through it, and faults injected meanwhile: `kill -9` of
//! each role and of NATS (each restarted), and a saga worker frozen (SIGSTOP) for longer than
//! its lease, then resumed. Once the engine settles, the invariants are checked against the
//! event store, the read models and the gateway's ledger.
//!
//! Needs the `commerce` binary built (`make test` and `cargo test --workspace --all-targets`
//! build it; else `cargo build --bin commerce`, or point `COMMERCE_BIN` at one), Postgres at
//! `DATABASE_URL` and `nats-server` on the `PATH`. `FAULTS_KEEP=1` keeps the processes' logs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/binary.rs"]
mod binary;
#[path = "../support/cleanup.rs"]
mod cleanup;
// Shared with the API tests, which use all of it.
mod client;
mod cluster;
mod invariants;
mod nats_cluster;
mod partitions;
mod rebuild;
// Shared by the API and fault tests; each uses part of it.
#[allow(dead_code)]
#[path = "../support/receiver.rs"]
mod receiver;
mod webhooks;
mod workload;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use commerce_sagas::gateway::PaymentView;
use sqlx::PgPool;
use uuid::Uuid;

use crate::client::Api;
use crate::cluster::{Cluster, SAGA_LEASE};
use crate::invariants::{ReadModels, StoreView, Violation};
use crate::workload::{BuyerReport, Seller};

const SELLERS: usize = 3;
const SKUS_PER_SELLER: usize = 2;
const INITIAL_STOCK: i64 = 60;
const BUYERS: usize = 12;
/// A bound on the workload however fast the machine is.
const MAX_ORDERS_PER_BUYER: u32 = 150;
/// How long the engine gets to settle after the workload.
const QUIESCENCE: Duration = Duration::from_secs(90);
/// No event appended for this long (more than a saga lease plus a payment timeout) and the
/// read models caught up: what is still unsettled will stay so.
const STUCK_AFTER: Duration = Duration::from_secs(15);

/// What happened when, for the report.
struct Timeline {
    start: Instant,
    entries: Vec<String>,
}

impl Timeline {
    fn note(&mut self, what: impl Into<String>) {
        let line = format!(
            "t+{:5.1}s {}",
            self.start.elapsed().as_secs_f64(),
            what.into()
        );
        eprintln!("fault suite: {line}");
        self.entries.push(line);
    }
}

/// Waits `duration`, restarting any process that died on its own meanwhile (as a supervisor
/// would), and noting it.
async fn hold(cluster: &mut Cluster, duration: Duration, timeline: &mut Timeline) {
    let until = Instant::now() + duration;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(250)).await;
        restart_crashed(cluster, timeline).await;
    }
}

async fn restart_crashed(cluster: &mut Cluster, timeline: &mut Timeline) {
    for crash in cluster.crashed() {
        let name = crash.split(' ').next().unwrap_or_default().to_owned();
        timeline.note(format!("UNEXPECTED: {crash}; restarting it"));
        cluster.kill9(&name);
        cluster.start_process(&name).await;
    }
}

/// `kill -9`, a pause, and a restart.
async fn crash(cluster: &mut Cluster, name: &str, down: Duration, timeline: &mut Timeline) {
    timeline.note(format!("kill -9 {name} (pid {:?})", cluster.pid(name)));
    cluster.kill9(name);
    tokio::time::sleep(down).await;
    cluster.start_process(name).await;
    timeline.note(format!("{name} restarted (pid {:?})", cluster.pid(name)));
}

/// Severs every Postgres connection to the suite's database (the engine's; the test's own pool
/// reconnects): a transient database fault, in the middle of whatever transactions were open.
async fn sever_database_connections(pool: &PgPool, database: &str, timeline: &mut Timeline) {
    let severed: Option<i64> = sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(database)
    .fetch_one(pool)
    .await
    .ok();
    timeline.note(format!(
        "pg_terminate_backend of every connection to {database}: {} severed",
        severed.map_or_else(|| "?".to_owned(), |n| n.to_string())
    ));
}

/// Sagas each worker process holds a live lease on, by process name.
async fn leases(pool: &PgPool, cluster: &Cluster) -> BTreeMap<&'static str, i64> {
    let rows: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT locked_by, count(*) FROM saga_deadlines WHERE locked_until > now() GROUP BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    let mut held = BTreeMap::new();
    for name in ["sagas-1", "sagas-2"] {
        let prefix = format!("saga-worker-{}-", cluster.pid(name).unwrap_or(0));
        let count = rows
            .iter()
            .filter(|(by, _)| by.as_deref().is_some_and(|b| b.starts_with(&prefix)))
            .map(|(_, n)| n)
            .sum();
        held.insert(name, count);
    }
    held
}

/// SIGSTOP the saga process holding the most leases for longer than a lease, then SIGCONT.
async fn freeze_a_saga_worker(
    pool: &PgPool,
    cluster: &mut Cluster,
    timeline: &mut Timeline,
    prefer_not: Option<&'static str>,
) -> &'static str {
    // Wait (briefly) for a moment when a worker is mid-saga, so the freeze catches it at work.
    let mut held = leases(pool, cluster).await;
    for _ in 0..20 {
        if held.values().any(|n| *n > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        held = leases(pool, cluster).await;
    }
    let name = held
        .iter()
        .filter(|(name, _)| Some(**name) != prefer_not)
        .max_by_key(|(_, n)| **n)
        .map_or("sagas-2", |(name, _)| *name);
    let frozen_for = SAGA_LEASE + Duration::from_secs(4);
    timeline.note(format!(
        "SIGSTOP {name} (pid {:?}, holding {} saga lease(s); leases by process {held:?}) for {}s, lease {}s",
        cluster.pid(name),
        held.get(name).copied().unwrap_or(0),
        frozen_for.as_secs(),
        SAGA_LEASE.as_secs()
    ));
    cluster.freeze(name);
    hold(cluster, frozen_for, timeline).await;
    cluster.thaw(name);
    timeline.note(format!("SIGCONT {name}"));
    name
}

async fn sandbox_views(
    sandbox_url: &str,
    store: &StoreView,
) -> BTreeMap<Uuid, Option<PaymentView>> {
    let http = reqwest::Client::new();
    let mut views = BTreeMap::new();
    for order_id in store.orders.keys() {
        let payment_id = store.payment_of.get(order_id).copied().unwrap_or_else(|| {
            commerce_domain::PaymentId::for_order(commerce_domain::OrderId(*order_id)).0
        });
        let response = http
            .get(format!("{sandbox_url}/v1/payments/{payment_id}"))
            .send()
            .await
            .expect("the sandbox answers");
        let view = if response.status().is_success() {
            Some(
                response
                    .json::<PaymentView>()
                    .await
                    .expect("a sandbox payment view"),
            )
        } else {
            None
        };
        views.insert(payment_id, view);
    }
    views
}

/// The buyers and sellers at work in the background, until told to stop.
struct Workload {
    stop: Arc<AtomicBool>,
    buyers: Vec<tokio::task::JoinHandle<BuyerReport>>,
    restockers: Vec<tokio::task::JoinHandle<(u32, Vec<String>)>>,
}

impl Workload {
    /// Sellers with their products and initial stock, and buyers, then the buyers' and the
    /// sellers' loops in the background. The timeline starts when they do.
    async fn start(api: &Api, began: Instant) -> (Workload, Timeline) {
        let run = Uuid::new_v4().simple().to_string();
        let mut sellers = Vec::new();
        let mut skus = Vec::new();
        for s in 0..SELLERS {
            let (_, token) = api.account("seller").await;
            let mut own = Vec::new();
            for k in 0..SKUS_PER_SELLER {
                let sku = format!("FLT-{}-{s}{k}", &run[..8]);
                api.product(&token, &sku, 500 + 100 * (s * SKUS_PER_SELLER + k) as i64)
                    .await;
                assert!(
                    api.restock(&token, &sku, INITIAL_STOCK).await,
                    "stocking {sku}"
                );
                own.push(sku.clone());
                skus.push(sku);
            }
            sellers.push(Arc::new(Seller { token, skus: own }));
        }
        let mut buyer_tokens = Vec::new();
        for _ in 0..BUYERS {
            buyer_tokens.push(api.account("buyer").await.1);
        }
        let skus = Arc::new(skus);

        let stop = Arc::new(AtomicBool::new(false));
        let mut timeline = Timeline {
            start: Instant::now(),
            entries: Vec::new(),
        };
        timeline.note(format!(
            "workload starts: {BUYERS} buyers, {} SKUs, set up in {:.1}s",
            skus.len(),
            began.elapsed().as_secs_f64()
        ));
        let buyers = buyer_tokens
            .into_iter()
            .map(|token| {
                tokio::spawn(workload::buyer(
                    api.clone(),
                    token,
                    skus.clone(),
                    stop.clone(),
                    MAX_ORDERS_PER_BUYER,
                ))
            })
            .collect();
        let restockers = sellers
            .iter()
            .map(|seller| tokio::spawn(workload::seller(api.clone(), seller.clone(), stop.clone())))
            .collect();
        let workload = Workload {
            stop,
            buyers,
            restockers,
        };
        (workload, timeline)
    }

    /// Stops the workload, lets the engine settle, and checks every invariant against the
    /// event store, the read models and the gateway's ledger; panics with the report when one
    /// fails.
    async fn finish_and_check(
        self,
        cluster: &mut Cluster,
        pool: &PgPool,
        api: &Api,
        timeline: &mut Timeline,
        began: Instant,
    ) {
        self.stop.store(true, Ordering::Relaxed);
        timeline.note("workload told to stop");

        let mut reports: Vec<BuyerReport> = Vec::new();
        for buyer in self.buyers {
            match tokio::time::timeout(Duration::from_secs(70), buyer).await {
                Ok(Ok(report)) => reports.push(report),
                Ok(Err(error)) => panic!("a buyer task failed: {error}"),
                Err(_) => timeline.note("a buyer did not stop within 70 s"),
            }
        }
        let mut restocks = 0;
        for restocker in self.restockers {
            if let Ok(Ok((done, _))) =
                tokio::time::timeout(Duration::from_secs(70), restocker).await
            {
                restocks += done;
            }
        }
        timeline.note("workload stopped");
        let (store, read_models) = settle(cluster, pool, timeline).await;
        let views = sandbox_views(&cluster.sandbox_url, &store).await;
        let violations = check_invariants(pool, api, &store, &read_models, &views).await;

        // The report.
        let confirmed = store
            .orders
            .values()
            .filter(|o| o.status == Some(commerce_domain::order::OrderStatus::Confirmed))
            .count();
        let cancelled = store
            .orders
            .values()
            .filter(|o| o.status == Some(commerce_domain::order::OrderStatus::Cancelled))
            .count();
        let stats = api.stats.lock().expect("stats");
        let gave_up: Vec<&String> = reports.iter().flat_map(|r| &r.gave_up).collect();
        let summary = format!(
            "fault suite summary after {:.1}s: {} orders ({confirmed} confirmed, {cancelled} cancelled), \
             {} checkouts and {} cancels acknowledged, {restocks} restocks, {} retries, {} requests given up{}, \
             {} refusals, {} payments known to the sandbox; processes' logs in {}\n  timeline:\n    {}",
            began.elapsed().as_secs_f64(),
            store.orders.len(),
            reports.iter().map(|r| r.checkouts).sum::<u32>(),
            reports.iter().map(|r| r.cancels).sum::<u32>(),
            stats.retries,
            stats.gave_up,
            gave_up
                .first()
                .map_or_else(String::new, |g| format!(" (first: {g})")),
            stats.refused,
            views.values().filter(|v| v.is_some()).count(),
            cluster.dir.display(),
            timeline.entries.join("\n    ")
        );
        drop(stats);
        eprintln!("{summary}");
        if !violations.is_empty() {
            cluster.keep();
        }
        let rendered: String = violations.iter().map(Violation::render).collect();
        assert!(
            violations.is_empty(),
            "{} invariant(s) failed:{rendered}\n\n{summary}\n  saga logs: {} {}",
            violations.len(),
            cluster.log_path("sagas-1").display(),
            cluster.log_path("sagas-2").display(),
        );
    }
}

/// Quiescence: every saga ended and the read models caught up, or nothing appended for longer
/// than a lease plus a payment timeout (what is left then is stuck), or the bound.
async fn settle(
    cluster: &mut Cluster,
    pool: &PgPool,
    timeline: &mut Timeline,
) -> (StoreView, ReadModels) {
    let settle_until = Instant::now() + QUIESCENCE;
    let mut last_position = (0_i64, Instant::now());
    loop {
        restart_crashed(cluster, timeline).await;
        let store = StoreView::load(pool).await;
        let read_models = ReadModels::load(pool).await;
        let unsettled = store.unsettled().len();
        let behind = read_models.differences(&store).len();
        let position: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
            .fetch_one(pool)
            .await
            .unwrap_or(0);
        if position != last_position.0 {
            last_position = (position, Instant::now());
        }
        let idle = last_position.1.elapsed() >= STUCK_AFTER;
        if (behind == 0 && (unsettled == 0 || idle)) || Instant::now() >= settle_until {
            timeline.note(format!(
                "settled{}: {unsettled} order(s) unsettled, {behind} read-model row(s) differing from the store",
                if idle { " (nothing appended for 15 s)" } else { "" }
            ));
            return (store, read_models);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Every invariant the suite checks, with its offenders.
async fn check_invariants(
    pool: &PgPool,
    api: &Api,
    store: &StoreView,
    read_models: &ReadModels,
    views: &BTreeMap<Uuid, Option<PaymentView>>,
) -> Vec<Violation> {
    let acks = api.acks.lock().expect("acks").clone();
    let uncertain = api.uncertain.lock().expect("uncertain").clone();
    let mut violations: Vec<Violation> = Vec::new();
    let mut add = |name: &'static str, offenders: Vec<String>| {
        if !offenders.is_empty() {
            violations.push(Violation {
                invariant: name,
                offenders,
            });
        }
    };
    add(
        "every acknowledged write is in the event store (restocks exactly once)",
        invariants::acknowledged_writes(pool, store, &acks, &uncertain).await,
    );
    let mut unsettled = invariants::orders_terminal(store);
    for line in unsettled.iter_mut().take(15) {
        if let Some(id) = line
            .strip_prefix("order ")
            .and_then(|rest| rest.split(':').next())
            .and_then(|id| id.parse::<Uuid>().ok())
        {
            line.push_str(&format!(
                "; saga {}",
                invariants::describe_saga(pool, &id).await
            ));
        }
    }
    add(
        "every order is terminal (confirmed or cancelled) and its saga completed with that outcome",
        unsettled,
    );
    add(
        "the order, inventory and payment read models equal a fold of the store",
        read_models.differences(store),
    );
    add(
        "stock is conserved per SKU (on_hand = restocked − sold to confirmed orders; reserved = 0)",
        invariants::stock_conserved(store),
    );
    add(
        "an order's units are reserved at most once per SKU (never again after a release)",
        invariants::inventory_streams(pool).await,
    );
    let (double, money, disagree) = invariants::payments_agree(store, views);
    add("at most one successful authorisation per payment", double);
    add(
        "money: a confirmed order's payment is captured, a cancelled order holds no money at the gateway",
        money,
    );
    add("the engine's payment state equals the sandbox's", disagree);
    let (after_completion, forward) = invariants::saga_streams(store);
    add(
        "no saga step after SagaCompleted that the state machine forbids",
        after_completion,
    );
    add(
        "no forward saga step (reserve, authorise, confirm, capture, commit) once compensation started",
        forward,
    );
    add(
        "nothing parked in dead_letters",
        invariants::dead_letters(pool).await,
    );
    add(
        "every open saga has a row in saga_deadlines",
        invariants::open_sagas_have_deadlines(store),
    );
    violations
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariants_hold_through_crashes_restarts_and_a_stalled_saga_worker() {
    let began = Instant::now();
    let mut cluster = Cluster::start().await;
    eprintln!(
        "fault suite: database {}, namespace {}, NATS on {}, logs in {} (started in {:.1}s)",
        cluster.database,
        cluster.namespace,
        cluster.nats_port,
        cluster.dir.display(),
        began.elapsed().as_secs_f64()
    );
    let pool = cluster.pool().await;
    let api = Api::new(cluster.command_url.clone(), cluster.query_url.clone());
    let (workload, mut timeline) = Workload::start(&api, began).await;

    // The faults, one after another, each followed by a restart.
    let gap = Duration::from_secs(6);
    let down = Duration::from_secs(1);
    hold(&mut cluster, gap, &mut timeline).await;
    crash(&mut cluster, "command-api", down, &mut timeline).await;
    hold(&mut cluster, gap, &mut timeline).await;
    crash(&mut cluster, "query-api", down, &mut timeline).await;
    hold(&mut cluster, gap, &mut timeline).await;
    crash(&mut cluster, "projections-1", down, &mut timeline).await;
    hold(&mut cluster, gap, &mut timeline).await;
    crash(&mut cluster, "sagas-1", down, &mut timeline).await;
    hold(&mut cluster, gap, &mut timeline).await;
    let frozen = freeze_a_saga_worker(&pool, &mut cluster, &mut timeline, None).await;
    hold(&mut cluster, gap, &mut timeline).await;
    crash(&mut cluster, "nats", Duration::from_secs(2), &mut timeline).await;
    hold(&mut cluster, gap, &mut timeline).await;
    sever_database_connections(&pool, &cluster.database, &mut timeline).await;
    hold(&mut cluster, gap, &mut timeline).await;
    freeze_a_saga_worker(&pool, &mut cluster, &mut timeline, Some(frozen)).await;
    hold(&mut cluster, gap, &mut timeline).await;
    workload
        .finish_and_check(&mut cluster, &pool, &api, &mut timeline, began)
        .await;
}

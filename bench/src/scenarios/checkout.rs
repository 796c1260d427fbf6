//! End-to-end sagas: buyers check out (`tok_ok`) and watch their order through the query API
//! (`GET /v1/orders/{id}`, the first read with `X-Min-Position`, then after 50, 100, 200, 250,
//! 250 … ms) until it is `confirmed`. The latency is checkout sent → the `confirmed` entry of
//! the order's timeline (the event's commit time, same clock), so that polling gently costs no
//! precision; when the client saw it is kept too. Offered at rising rates (open loop) until p99
//! checkout → confirmed passes 1 s:
//! - **pure**: each buyer already has one cart line; only the checkout and the watching;
//! - **mix**: Online Boutique's load mix around each checkout: browse the catalog 10 times,
//!   view the cart 3 times, add to cart twice, check out once.
//!
//! Each rate also reports, per confirmed order, the events appended, the transactions that
//! appended them and every Postgres commit of the engine's database (read side included), and
//! the peak RSS of this process (the engine runs in it) against a 512 MiB limit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde_json::json;
use tokio::time::Instant;

use super::{caught_up, memory, Bench};
use crate::client::{checkout_body, Api};
use crate::load::{for_each, open_loop_with, Counter};
use crate::report::{ratio, Row};
use crate::stats::{Recorder, Summary};

const NAME: &str = "checkout";
/// Pauses between reads of an order not yet confirmed: these, then the last one again.
const POLLS_MS: [u64; 4] = [50, 100, 200, 250];
/// An order not confirmed this long after its checkout counts as timed out.
const ORDER_TIMEOUT: Duration = Duration::from_secs(15);
/// The p99 checkout → confirmed a rate must stay under to count as sustained.
const P99_LIMIT_MS: f64 = 1000.0;
/// The engine's peak RSS under the checkout load must stay under this.
const RSS_LIMIT_MIB: f64 = 512.0;

#[derive(Clone, Default)]
struct Recorders {
    /// Checkout sent → the order's `confirmed` timeline entry.
    saga: Recorder,
    /// Checkout sent → the client saw it confirmed.
    observed: Recorder,
    /// The checkout request alone.
    checkout: Recorder,
    /// Every other request of the mix.
    requests: Recorder,
    cancelled: Arc<AtomicU64>,
    timed_out: Arc<AtomicU64>,
}

#[derive(Debug, Serialize)]
struct Step {
    mode: &'static str,
    offered_per_second: f64,
    sessions: u64,
    not_sent: u64,
    confirmed_per_second: f64,
    /// Checkout sent → confirmed (timeline), for confirmed orders.
    saga: Summary,
    /// Checkout sent → seen confirmed by polling.
    observed: Summary,
    checkout: Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    other_requests: Option<Summary>,
    cancelled: u64,
    timed_out: u64,
    /// Events appended during the step per confirmed order (the saga's cost in the store).
    events_per_order: Option<f64>,
    /// Transactions that appended events during the step, per confirmed order (checkout and
    /// saga commits).
    event_transactions_per_order: Option<f64>,
    /// Every Postgres commit in the engine's database during the step (reads, projections and
    /// the relay included), per confirmed order.
    commits_per_order: Option<f64>,
    /// This process's peak RSS during the step (the engine, and the load generator with it).
    peak_rss_mib: f64,
    sustained: bool,
}

/// Checks the buyer's cart out and reads the order until it is confirmed.
async fn checkout_and_watch(api: &Api, buyer: &str, recorders: &Recorders) {
    let sent = Instant::now();
    let sent_at = chrono::Utc::now();
    let request = api
        .request(Method::POST, "/v1/me/cart/checkout", Some(buyer))
        .json(&checkout_body());
    let answer = match Api::send(request).await {
        Ok(answer) => answer,
        Err(error) => {
            recorders.saga.error(&error);
            return;
        }
    };
    if answer.status != 202 {
        recorders.checkout.status(answer.status);
        recorders.saga.status(answer.status);
        return;
    }
    recorders.checkout.ok(sent.elapsed());
    let order_id = answer
        .json()
        .ok()
        .and_then(|body| body["order_id"].as_str().map(str::to_owned));
    let Some(order_id) = order_id else {
        recorders
            .saga
            .error(&anyhow::anyhow!("a checkout response without order_id"));
        return;
    };
    let mut min_position = answer.header_i64("x-event-position");
    let path = format!("/v1/orders/{order_id}");
    for attempt in 0_usize.. {
        let mut request = api.request(Method::GET, &path, Some(buyer));
        if let Some(position) = min_position.take() {
            request = request.header("x-min-position", position);
        }
        match Api::send(request).await {
            Ok(answer) if answer.status == 200 => {
                let body = answer.json().unwrap_or_default();
                match body["status"].as_str() {
                    Some("confirmed") => {
                        recorders.observed.ok(sent.elapsed());
                        match confirmed_at(&body) {
                            Some(at) => recorders
                                .saga
                                .ok((at - sent_at).to_std().unwrap_or_default()),
                            None => recorders.saga.error(&anyhow::anyhow!(
                                "a confirmed order without a confirmed timeline entry"
                            )),
                        }
                        return;
                    }
                    Some("cancelled") => {
                        recorders.cancelled.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    _ => {}
                }
            }
            // Not in the read model yet.
            Ok(answer) if answer.status == 404 || answer.status == 503 => {}
            Ok(answer) => {
                recorders.saga.status(answer.status);
                return;
            }
            Err(error) => {
                recorders.saga.error(&error);
                return;
            }
        }
        if sent.elapsed() > ORDER_TIMEOUT {
            recorders.timed_out.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let pause = POLLS_MS[attempt.min(POLLS_MS.len() - 1)];
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// When the order's timeline says it was confirmed.
fn confirmed_at(order: &serde_json::Value) -> Option<chrono::DateTime<chrono::Utc>> {
    order["timeline"]
        .as_array()?
        .iter()
        .find(|entry| entry["status"] == "confirmed")?["at"]
        .as_str()?
        .parse()
        .ok()
}

/// One timed request of the mix; `false` when it failed.
async fn timed(recorders: &Recorders, request: reqwest::RequestBuilder) -> bool {
    let started = Instant::now();
    match Api::status(request).await {
        Ok(status) if (200..300).contains(&status) => {
            recorders.requests.ok(started.elapsed());
            true
        }
        Ok(status) => {
            recorders.requests.status(status);
            false
        }
        Err(error) => {
            recorders.requests.error(&error);
            false
        }
    }
}

/// A shopper of the mix: browse 10, view cart 3, add to cart 2, checkout 1.
async fn mix_session(
    api: Api,
    buyer: String,
    skus: Arc<Vec<String>>,
    n: u64,
    recorders: Recorders,
) {
    const CATEGORIES: [&str; 5] = ["kitchen", "garden", "books", "toys", "clothing"];
    let browse = |k: u64| {
        let path = if k.is_multiple_of(3) {
            "/v1/products?limit=20&q=product".to_owned()
        } else {
            format!(
                "/v1/products?limit=20&category=bench/{}",
                CATEGORIES[((n + k) % 5) as usize]
            )
        };
        api.request(Method::GET, &path, None)
    };
    let add = |k: u64| {
        let sku = &skus[((n * 2 + k) % skus.len() as u64) as usize];
        api.request(
            Method::PUT,
            &format!("/v1/me/cart/items/{sku}"),
            Some(&buyer),
        )
        .json(&json!({"quantity": 1}))
    };
    let view = || api.request(Method::GET, "/v1/me/cart", Some(&buyer));
    for k in 0..5 {
        timed(&recorders, browse(k)).await;
    }
    if !timed(&recorders, add(0)).await {
        return;
    }
    for k in 5..10 {
        timed(&recorders, browse(k)).await;
    }
    timed(&recorders, view()).await;
    if !timed(&recorders, add(1)).await {
        return;
    }
    timed(&recorders, view()).await;
    timed(&recorders, view()).await;
    checkout_and_watch(&api, &buyer, &recorders).await;
}

async fn step(bench: &Bench<'_>, mode: &'static str, rate: f64) -> anyhow::Result<Step> {
    let duration = bench.sizes.checkout_step;
    let sessions = (rate * duration.as_secs_f64()).ceil() as usize + 1;
    let buyers = Arc::new(bench.shop.buyers(sessions).await?);
    let skus = Arc::new(bench.shop.skus.clone());
    let api = bench.shop.api.clone();
    if mode == "pure" {
        let shop = &bench.shop;
        let filled = for_each(64, sessions, &Counter::default(), |n| {
            let (buyer, sku) = (&buyers[n as usize], &skus[n as usize % skus.len()]);
            async move { Ok(shop.set_quantity(buyer, sku, 1).await?.status) }
        })
        .await;
        anyhow::ensure!(
            filled.ok as usize == sessions,
            "filling {sessions} carts failed: {}",
            filled.failures()
        );
    }
    eprintln!("  {mode} @ {rate}/s for {duration:?}");
    let before = last_position(bench).await?;
    let commits_before = commits(bench).await?;
    memory::reset_peak_rss();
    let recorders = Recorders::default();
    let schedule = open_loop_with(rate, duration, 20_000, &Counter::default(), |n, _due| {
        let (api, buyers, skus, recorders) =
            (api.clone(), buyers.clone(), skus.clone(), recorders.clone());
        async move {
            let Some(buyer) = buyers.get(n as usize).cloned() else {
                return;
            };
            if mode == "pure" {
                checkout_and_watch(&api, &buyer, &recorders).await;
            } else {
                mix_session(api, buyer, skus, n, recorders).await;
            }
        }
    })
    .await;
    let saga = recorders.saga.summary(schedule.sending);
    let (_, peak_rss_mib) = memory::rss_mib();
    let appended = last_position(bench).await? - before;
    let per_order = |n: i64| (saga.ok > 0).then(|| n as f64 / saga.ok as f64);
    let events_per_order = per_order(appended);
    let event_transactions_per_order = per_order(event_transactions_after(bench, before).await?);
    // The statistics are flushed by each backend about once a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let commits_per_order = per_order(commits(bench).await? - commits_before);
    let cancelled = recorders.cancelled.load(Ordering::Relaxed);
    let timed_out = recorders.timed_out.load(Ordering::Relaxed);
    let sustained = saga.p99_ms.is_some_and(|p99| p99 < P99_LIMIT_MS)
        && saga.ok as f64 >= 0.95 * schedule.sent as f64
        && schedule.not_sent == 0
        && timed_out == 0;
    Ok(Step {
        mode,
        offered_per_second: rate,
        sessions: schedule.sent,
        not_sent: schedule.not_sent,
        confirmed_per_second: saga.per_second,
        checkout: recorders.checkout.summary(schedule.sending),
        observed: recorders.observed.summary(schedule.sending),
        other_requests: (mode == "mix").then(|| recorders.requests.summary(schedule.sending)),
        saga,
        cancelled,
        timed_out,
        events_per_order,
        event_transactions_per_order,
        commits_per_order,
        peak_rss_mib,
        sustained,
    })
}

/// The transactions that appended events after `position`.
async fn event_transactions_after(bench: &Bench<'_>, position: i64) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(DISTINCT tx_id) FROM events WHERE position > $1")
            .bind(position)
            .fetch_one(&bench.engine.pool)
            .await?,
    )
}

/// Commits in the engine's database so far (`pg_stat_database`).
async fn commits(bench: &Bench<'_>) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&bench.engine.pool)
    .await?)
}

async fn last_position(bench: &Bench<'_>) -> anyhow::Result<i64> {
    let position: Option<i64> = sqlx::query_scalar("SELECT max(position) FROM events")
        .fetch_one(&bench.engine.pool)
        .await?;
    Ok(position.unwrap_or(0))
}

pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<()> {
    let pg = bench.report.limits.pg_commits_per_second;
    let mut steps = Vec::new();
    for (mode, rates) in [
        ("pure", bench.sizes.checkout_rates.clone()),
        ("mix", bench.sizes.mix_rates.clone()),
    ] {
        let mut best: Option<f64> = None;
        for rate in rates {
            let step = step(bench, mode, rate).await?;
            let mut note = format!(
                "offered {rate}/s: {}/{} confirmed",
                step.saga.ok, step.sessions
            );
            for (what, n) in [
                ("cancelled", step.cancelled),
                ("timed out", step.timed_out),
                ("not sent", step.not_sent),
            ] {
                if n > 0 {
                    note.push_str(&format!(", {n} {what}"));
                }
            }
            if let Some(p99) = step.checkout.p99_ms {
                note.push_str(&format!(", POST p99 {p99:.0} ms"));
            }
            if let Some(p99) = step.observed.p99_ms {
                note.push_str(&format!(", seen p99 {p99:.0} ms"));
            }
            if let Some(events) = step.events_per_order {
                note.push_str(&format!(", {events:.1} events/order"));
            }
            if let (Some(appending), Some(commits)) =
                (step.event_transactions_per_order, step.commits_per_order)
            {
                note.push_str(&format!(
                    ", {appending:.1} appending tx/order ({commits:.0} pg commits/order in all)"
                ));
            }
            note.push_str(&format!(
                ", peak RSS {:.0} MiB ({:.2}× {RSS_LIMIT_MIB} MiB)",
                step.peak_rss_mib,
                step.peak_rss_mib / RSS_LIMIT_MIB
            ));
            if let Some(requests) = &step.other_requests {
                note.push_str(&format!(
                    ", other reqs p99 {:.0} ms",
                    requests.p99_ms.unwrap_or(0.0)
                ));
            }
            let failures = step.saga.failures();
            bench.report.row(
                Row::from_summary(
                    NAME,
                    format!("{mode} @ {rate}/s checkout→confirmed"),
                    "order",
                    &step.saga,
                )
                .ratio(ratio(step.confirmed_per_second, pg), "pg commit")
                .note(note),
            );
            if !failures.is_empty() {
                eprintln!("    failures: {failures}");
            }
            let sustained = step.sustained;
            if sustained {
                best = Some(best.unwrap_or(0.0).max(step.confirmed_per_second));
            }
            steps.push(step);
            // Let the read side and the sagas finish before the next rate.
            if let Err(error) = caught_up(bench.engine, Duration::from_secs(60)).await {
                eprintln!("    {error:#}");
            }
            if !sustained {
                break;
            }
        }
        let mut row = Row::new(NAME, format!("{mode}: max sustained (p99 < 1 s)"), "order");
        row.rate = best;
        bench.report.row(
            row.ratio(best.and_then(|b| ratio(b, pg)), "pg commit")
                .note(if best.is_none() {
                    "no rate sustained"
                } else {
                    ""
                }),
        );
    }
    bench
        .report
        .detail(NAME, json!({"poll_ms": POLLS_MS, "steps": steps}));
    Ok(())
}

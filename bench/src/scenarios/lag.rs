//! Projection lag, commit → visible: cart commands at half the best command rate (open loop);
//! for a sample of them, as soon as the command answered, `GET /v1/me/cart` with
//! `X-Min-Position` set to its `X-Event-Position`, timed until it answers 200. The engine waits
//! server-side, polling the carts projection's watermark every 5 ms at first, doubling to 50 ms.

use std::sync::Arc;

use reqwest::Method;
use serde_json::json;
use tokio::time::Instant;

use std::time::Duration;

use super::{caught_up, Bench};
use crate::client::Api;
use crate::load::{closed_loop, for_each, open_loop, Counter, OpenLoop, Status};
use crate::report::Row;
use crate::scenarios::commands::set_quantity_op;
use crate::stats::{Recorder, Summary};

const NAME: &str = "lag";
/// Commands followed by a read, per second (about).
const SAMPLES_PER_SECOND: f64 = 50.0;
/// The rates measured, as fractions of the best command rate: the half, and a light
/// load for comparison.
const FRACTIONS: [(f64, &str); 2] = [(0.5, "1/2"), (0.125, "1/8")];

pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<()> {
    let sizes = bench.sizes.clone();
    let buyers = Arc::new(bench.shop.buyers(sizes.buyers.min(2_000)).await?);
    let skus = Arc::new(bench.shop.skus.clone());
    let api = bench.shop.api.clone();
    let command = Arc::new(set_quantity_op(api.clone(), buyers.clone(), skus.clone()));
    let counter = Counter::default();
    let warm = for_each(64, buyers.len(), &counter, |n| command(n)).await;
    anyhow::ensure!(
        warm.ok as usize == buyers.len(),
        "warm-up commands failed: {}",
        warm.failures()
    );
    let max = match bench.command_max {
        Some(max) => max,
        None => {
            eprintln!("  measuring the best command rate first (64 connections, 3 s)");
            let command = command.clone();
            let summary =
                closed_loop(64, Duration::from_secs(3), &counter, move |n| command(n)).await;
            summary.per_second
        }
    };
    let mut runs = Vec::new();
    for (fraction, label) in FRACTIONS {
        let rate = (max * fraction).max(1.0);
        // The read side starts each run caught up.
        if let Err(error) = caught_up(bench.engine, Duration::from_secs(120)).await {
            eprintln!("    {error:#}");
        }
        let (commands, lag, every) = measure(
            rate,
            sizes.lag_run,
            &counter,
            api.clone(),
            buyers.clone(),
            skus.clone(),
            command.clone(),
        )
        .await;
        bench.report.row(Row::from_summary(
            NAME,
            format!("cart PUT open @ {rate:.0}/s ({label} max)"),
            "cmd",
            &commands.summary,
        ));
        bench.report.row(
            Row::from_summary(
                NAME,
                format!("commit→visible @ {rate:.0}/s (carts)"),
                "sample",
                &lag,
            )
            .note(format!("{} samples", lag.ok)),
        );
        runs.push(
            json!({"fraction_of_max": fraction, "rate": rate, "sample_every": every,
                         "commands": commands, "lag": lag}),
        );
    }
    bench
        .report
        .detail(NAME, json!({"best_command_rate": max, "runs": runs}));
    Ok(())
}

/// Commands at `rate`, every `every`th followed by a read-your-writes read: the commands'
/// figures, the reads' (command answered → read answered 200), and `every`.
async fn measure(
    rate: f64,
    duration: Duration,
    counter: &Counter,
    api: Api,
    buyers: Arc<Vec<String>>,
    skus: Arc<Vec<String>>,
    command: Arc<
        impl Fn(u64) -> futures::future::BoxFuture<'static, Status> + Send + Sync + 'static,
    >,
) -> (OpenLoop, Summary, u64) {
    let every = (rate / SAMPLES_PER_SECOND).round().max(1.0) as u64;
    eprintln!("  commands at {rate:.0}/s, every {every}th followed by a read-your-writes GET, {duration:?}");
    let lag = Recorder::new();
    let lag_in = lag.clone();
    let carts = buyers.len() as u64;
    let open = open_loop(rate, duration, 4096, counter, move |n| {
        let (api, buyers, skus, lag, command) = (
            api.clone(),
            buyers.clone(),
            skus.clone(),
            lag_in.clone(),
            command.clone(),
        );
        async move {
            let sampled = n % every == 0;
            if !sampled {
                return command(n).await;
            }
            // The same command as `set_quantity_op`'s, but its headers are needed.
            let cart = (n % carts) as usize;
            let quantity = 1 + (n / carts) % 2;
            let path = format!("/v1/me/cart/items/{}", skus[cart % skus.len()]);
            let answer = Api::send(
                api.request(Method::PUT, &path, Some(&buyers[cart]))
                    .json(&json!({ "quantity": quantity })),
            )
            .await?;
            if !answer.ok() {
                return Ok(answer.status);
            }
            let committed = Instant::now();
            let Some(position) = answer.header_i64("x-event-position") else {
                lag.error(&anyhow::anyhow!(
                    "a command response without X-Event-Position"
                ));
                return Ok(answer.status);
            };
            let read = api
                .request(Method::GET, "/v1/me/cart", Some(&buyers[cart]))
                .header("x-min-position", position);
            match Api::status(read).await {
                Ok(200) => lag.ok(committed.elapsed()),
                Ok(status) => lag.status(status),
                Err(error) => lag.error(&error),
            }
            Ok(answer.status)
        }
    })
    .await;
    let lag_summary = lag.summary(Duration::from_secs_f64(open.summary.seconds));
    (open, lag_summary, every)
}

//! Single-event commands: `PUT /v1/me/cart/items/{sku}` over many carts, each request setting
//! the other quantity than the cart's last one so that every command appends one event. Closed
//! loop at 1, 8 and 64 connections, then open loop at half the best closed-loop rate.

use std::sync::Arc;

use reqwest::Method;
use serde::Serialize;
use serde_json::json;

use super::Bench;
use crate::client::Api;
use crate::load::{closed_loop, for_each, open_loop, Counter, OpenLoop, Status};
use crate::report::{ratio, Row};
use crate::stats::Summary;

const NAME: &str = "commands";

#[derive(Serialize)]
struct Closed {
    connections: usize,
    #[serde(flatten)]
    summary: Summary,
}

/// Request `n` of a run over `buyers` carts: cart `n % buyers`, its quantity alternating 1, 2
/// from one visit to the next (the counter never restarts, so neither does the alternation).
pub fn set_quantity_op(
    api: Api,
    buyers: Arc<Vec<String>>,
    skus: Arc<Vec<String>>,
) -> impl Fn(u64) -> futures::future::BoxFuture<'static, Status> + Send + Sync + 'static {
    move |n| {
        let carts = buyers.len().max(1) as u64;
        let cart = (n % carts) as usize;
        let quantity = 1 + (n / carts) % 2;
        let request = api
            .request(
                Method::PUT,
                &format!("/v1/me/cart/items/{}", skus[cart % skus.len()]),
                Some(&buyers[cart]),
            )
            .json(&json!({ "quantity": quantity }));
        Box::pin(Api::status(request))
    }
}

pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<()> {
    let sizes = bench.sizes.clone();
    let buyers = Arc::new(bench.shop.buyers(sizes.buyers).await?);
    let skus = Arc::new(bench.shop.skus.clone());
    let op = set_quantity_op(bench.shop.api.clone(), buyers.clone(), skus);
    let op = Arc::new(op);
    let counter = Counter::default();

    eprintln!("  warm-up: one command on each of {} carts", buyers.len());
    let warm = for_each(64, buyers.len(), &counter, |n| op(n)).await;
    anyhow::ensure!(
        warm.ok as usize == buyers.len(),
        "warm-up commands failed: {}",
        warm.failures()
    );

    let pg = bench.report.limits.pg_commits_per_second;
    let pg1 = bench.report.limits.pg_commits_per_second_1;
    let mut closed = Vec::new();
    let mut best: f64 = 0.0;
    for &connections in &sizes.command_connections {
        eprintln!(
            "  closed loop, {connections} connection(s), {:?}",
            sizes.run
        );
        let op = op.clone();
        let summary = closed_loop(connections, sizes.run, &counter, move |n| op(n)).await;
        best = best.max(summary.per_second);
        let mut row = Row::from_summary(
            NAME,
            format!("cart PUT closed, {connections} conn"),
            "cmd",
            &summary,
        )
        .ratio(ratio(summary.per_second, pg), "pg commit");
        if connections == 1 {
            if let Some(r) = ratio(summary.per_second, pg1) {
                row = row.note(format!("{r:.3} of 1-conn commit rate"));
            }
        }
        bench.report.row(row);
        closed.push(Closed {
            connections,
            summary,
        });
    }
    bench.command_max = Some(best);

    let rate = (best / 2.0).max(1.0);
    eprintln!(
        "  open loop at {rate:.0}/s (half the best closed-loop rate), {:?}",
        sizes.run
    );
    let op2 = op.clone();
    let open: OpenLoop = open_loop(rate, sizes.run, 4096, &counter, move |n| op2(n)).await;
    bench.report.row(
        Row::from_summary(
            NAME,
            format!("cart PUT open @ {rate:.0}/s"),
            "cmd",
            &open.summary,
        )
        .ratio(ratio(open.summary.per_second, pg), "pg commit")
        .note(if open.not_sent > 0 {
            format!("{} not sent (4096 in flight)", open.not_sent)
        } else {
            String::new()
        }),
    );
    bench.report.detail(
        NAME,
        json!({"carts": buyers.len(), "warm_up": warm, "closed_loop": closed, "open_loop": open}),
    );
    Ok(())
}

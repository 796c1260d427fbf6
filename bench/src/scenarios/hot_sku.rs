//! One hot aggregate: `POST /v1/inventory/{sku}/restock {quantity: 1}` on a single SKU from many
//! connections at once. The engine must serialise them (no 409 may reach a client) and lose
//! none: afterwards the SKU's stream holds exactly one event per success.

use std::sync::Arc;

use anyhow::Context;
use reqwest::Method;
use serde_json::json;

use super::Bench;
use crate::client::Api;
use crate::load::{closed_loop, for_each, Counter};
use crate::report::{ratio, Row};

const NAME: &str = "hot-sku";
const SKU: &str = "HOT-SKU";

pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<()> {
    let sizes = bench.sizes.clone();
    bench.shop.product(SKU, 999, "hot", 0).await?;
    let api = bench.shop.api.clone();
    let seller: Arc<str> = bench.shop.seller.as_str().into();
    let op = Arc::new(move |_: u64| {
        let request = api
            .request(
                Method::POST,
                &format!("/v1/inventory/{SKU}/restock"),
                Some(&seller),
            )
            .json(&json!({ "quantity": 1 }));
        Api::status(request)
    });
    let counter = Counter::default();
    let warm = for_each(8, 100, &counter, |n| op(n)).await;
    let connections = sizes.hot_connections;
    eprintln!(
        "  closed loop, {connections} connections on one SKU, {:?}",
        sizes.run
    );
    let op2 = op.clone();
    let summary = closed_loop(connections, sizes.run, &counter, move |n| op2(n)).await;

    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'inventory' AND aggregate_id = $1",
    )
    .bind(SKU)
    .fetch_one(&bench.engine.pool)
    .await
    .context("counting the hot SKU's events")?;
    let expected = (warm.ok + summary.ok) as i64;
    let conflicts = summary.count(409);
    let note = format!(
        "409s: {conflicts}; events {events} for {expected} successes{}",
        if events == expected {
            ""
        } else {
            " (MISMATCH)"
        }
    );
    bench.report.row(
        Row::from_summary(
            NAME,
            format!("restock 1 SKU, {connections} conn"),
            "cmd",
            &summary,
        )
        .ratio(
            ratio(
                summary.per_second,
                bench.report.limits.pg_commits_per_second,
            ),
            "pg commit",
        )
        .note(note),
    );
    bench.report.detail(
        NAME,
        json!({"connections": connections, "summary": summary, "conflicts": conflicts,
               "events_in_stream": events, "successes": expected}),
    );
    Ok(())
}

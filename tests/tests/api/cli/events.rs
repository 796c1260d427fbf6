//! `events tail` and `events republish`.

use serde_json::Value;

use super::{operator, Live};
use crate::helpers::spawn_app;

#[tokio::test]
async fn tail_from_a_position_prints_ndjson_until_ctrl_c() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "TAIL-1", 100, 2).await;

    let mut tail = Live::start(
        &app,
        &[
            "events",
            "tail",
            "--from",
            "1",
            "--json",
            "--type",
            "inventory",
        ],
    );
    let line = tail.until(|l| l.contains("TAIL-1")).await;
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["aggregate_type"], "inventory");
    assert!(event["position"].as_i64().unwrap() >= 1, "{event}");
    assert!(tail
        .seen()
        .iter()
        .all(|l| serde_json::from_str::<Value>(l).is_ok()));
    assert_eq!(tail.interrupt().await, Some(0));
}

#[tokio::test]
async fn tail_starts_at_the_end_and_prints_what_comes_next() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "TAIL-OLD", 100, 1).await;
    // The end of the store is where the projections have got to: let them get there first.
    app.projections_settled().await;

    let mut tail = Live::start(&app, &["events", "tail"]);
    // The header comes once the end of the store is found.
    tail.until(|l| l.contains("POSITION") && l.contains("EVENT"))
        .await;
    app.product(&seller, "TAIL-NEW", 100, 1).await;
    let line = tail.until(|l| l.contains("TAIL-NEW")).await;
    assert!(line.contains("inventory TAIL-NEW #1"), "{line}");
    assert!(
        tail.seen().iter().all(|l| !l.contains("TAIL-OLD")),
        "{:#?}",
        tail.seen()
    );
    assert_eq!(tail.interrupt().await, Some(0));
}

#[tokio::test]
async fn republish_is_accepted_and_can_be_waited_for() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "REPUB", 100, 1).await;

    let started = operator(&app, &["events", "republish", "--from", "1", "--json"])
        .await
        .json();
    assert_eq!(started["from_position"], 1);
    assert!(started["republish_id"].is_string(), "{started}");

    let waited = operator(&app, &["events", "republish", "--from", "1", "--wait"]).await;
    assert!(waited.ok().contains("completed"), "{waited:?}");
}

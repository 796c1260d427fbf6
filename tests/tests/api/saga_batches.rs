//! The saga commits consecutive steps together: a batch of steps leaves exactly what the same
//! steps one commit each leave, whatever happens in the middle, and a failure commits none of it.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::checkout::TERMINAL;
use crate::helpers::{checkout_body, spawn_app_with, TestApp};

/// What a checkout left in the store, with the ids of this run taken out: each stream's event
/// types (the order's, the saga's, the payment's, and each SKU's), the order's status, and each
/// SKU's stock.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    streams: BTreeMap<String, Vec<String>>,
    status: String,
    stock: BTreeMap<String, (i64, i64)>,
}

/// An engine whose saga commits at most `steps_per_commit` steps together, with `MUG` (5 in
/// stock) and `CUP` (`cups` in stock) for sale.
async fn shop(steps_per_commit: u32, cups: i64) -> (TestApp, String) {
    let app = spawn_app_with(|config| config.saga_steps_per_commit = steps_per_commit).await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 1250, 5).await;
    app.product(&seller, "CUP", 800, cups).await;
    (app, seller)
}

/// A buyer checks out one mug and two cups, paying with `token`.
async fn checkout(app: &TestApp, token: &str) -> (String, Uuid) {
    let (_, buyer) = app.account("buyer").await;
    app.add_to_cart(&buyer, "MUG", 1).await;
    app.add_to_cart(&buyer, "CUP", 2).await;
    let mut body = checkout_body();
    body["payment_token"] = json!(token);
    let response = app.post("/v1/me/cart/checkout", Some(&buyer), body).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let order_id = response.json::<serde_json::Value>().await.unwrap()["order_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    (buyer, order_id)
}

async fn outcome(app: &TestApp, buyer: &str, order_id: Uuid) -> Outcome {
    let order = app.wait_for_order(order_id, buyer, TERMINAL).await;
    app.wait_for_saga(order_id).await;
    let id = order_id.to_string();
    let payment: Option<String> = sqlx::query_scalar(
        "SELECT aggregate_id FROM events WHERE aggregate_type = 'payment' AND payload->>'order_id' = $1 LIMIT 1",
    )
    .bind(&id)
    .fetch_optional(&app.pool)
    .await
    .unwrap();
    let mut streams = BTreeMap::new();
    streams.insert("order".to_owned(), app.stream("order", &id).await);
    streams.insert("saga".to_owned(), app.stream("checkout_saga", &id).await);
    if let Some(payment) = payment {
        streams.insert("payment".to_owned(), app.stream("payment", &payment).await);
    }
    let mut stock = BTreeMap::new();
    for sku in ["MUG", "CUP"] {
        streams.insert(sku.to_owned(), app.stream("inventory", sku).await);
        let levels = app.stock(sku).await;
        stock.insert(
            sku.to_owned(),
            (
                levels["on_hand"].as_i64().unwrap(),
                levels["reserved"].as_i64().unwrap(),
            ),
        );
    }
    Outcome {
        streams,
        status: order["status"].as_str().unwrap().to_owned(),
        stock,
    }
}

/// The transactions the saga's steps of `order_id` were committed in.
async fn saga_commits(app: &TestApp, order_id: Uuid) -> i64 {
    sqlx::query_scalar(
        "SELECT count(DISTINCT tx_id) FROM events WHERE metadata->>'correlation_id' = $1 \
         AND metadata->>'idempotency_key' LIKE 'saga:%'",
    )
    .bind(order_id.to_string())
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

/// One checkout on an engine committing every step alone and on one batching them: the same
/// outcome, in fewer commits.
async fn same_outcome_in_fewer_commits(token: &str, cups: i64) -> Outcome {
    let (single, _) = shop(1, cups).await;
    let (buyer, order_id) = checkout(&single, token).await;
    let one_by_one = outcome(&single, &buyer, order_id).await;
    let single_commits = saga_commits(&single, order_id).await;

    let (batched, _) = shop(32, cups).await;
    let (buyer, order_id) = checkout(&batched, token).await;
    let together = outcome(&batched, &buyer, order_id).await;
    let batched_commits = saga_commits(&batched, order_id).await;

    assert_eq!(together, one_by_one);
    assert!(
        batched_commits < single_commits,
        "{batched_commits} commits batched, {single_commits} one by one"
    );
    together
}

#[tokio::test]
async fn a_confirmed_checkout_batched_equals_its_steps_one_by_one() {
    let outcome = same_outcome_in_fewer_commits("tok_ok", 5).await;
    assert_eq!(outcome.status, "confirmed");
    assert_eq!(outcome.stock["MUG"], (4, 0));
    assert_eq!(outcome.stock["CUP"], (3, 0));
}

#[tokio::test]
async fn a_line_out_of_stock_in_the_middle_of_a_batch_compensates_as_single_steps_do() {
    // The mug is reserved, then the cups are refused: the mug is released in the same batch.
    let outcome = same_outcome_in_fewer_commits("tok_ok", 1).await;
    assert_eq!(outcome.status, "cancelled");
    assert_eq!(outcome.stock["MUG"], (5, 0));
    assert_eq!(outcome.stock["CUP"], (1, 0));
    assert!(outcome.streams["saga"].contains(&"CompensationStarted".to_owned()));
}

#[tokio::test]
async fn a_declined_payment_batched_equals_its_steps_one_by_one() {
    let outcome = same_outcome_in_fewer_commits("tok_decline", 5).await;
    assert_eq!(outcome.status, "cancelled");
    assert_eq!(outcome.stock["MUG"], (5, 0));
}

#[tokio::test]
async fn a_batch_failing_in_the_middle_commits_none_of_its_steps() {
    let (app, _) = shop(32, 5).await;
    // The store refuses the order's reservation: the third step of the first batch, after the
    // saga's start and the reservation of the mug.
    sqlx::query(
        "ALTER TABLE events ADD CONSTRAINT test_refuse_reserved \
         CHECK (aggregate_type <> 'order' OR event_type <> 'InventoryReserved') NOT VALID",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let (buyer, order_id) = checkout(&app, "tok_ok").await;
    // The worker tries (and fails) more than once meanwhile.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let attempts: Option<i32> =
            sqlx::query_scalar("SELECT attempts FROM saga_deadlines WHERE saga_id = $1")
                .bind(order_id)
                .fetch_optional(&app.pool)
                .await
                .unwrap();
        if attempts.is_some_and(|n| n >= 2) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the saga was not retried"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        app.stream("checkout_saga", &order_id.to_string()).await,
        Vec::<String>::new(),
        "the saga's start was committed without the rest of its batch"
    );
    assert_eq!(app.stream("inventory", "MUG").await, ["Restocked"]);

    sqlx::query("ALTER TABLE events DROP CONSTRAINT test_refuse_reserved")
        .execute(&app.pool)
        .await
        .unwrap();
    let after = outcome(&app, &buyer, order_id).await;
    assert_eq!(after.status, "confirmed");
    assert_eq!(after.stock["MUG"], (4, 0));

    let (single, _) = shop(1, 5).await;
    let (buyer, order_id) = checkout(&single, "tok_ok").await;
    assert_eq!(after, outcome(&single, &buyer, order_id).await);
}

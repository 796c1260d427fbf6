//! `Idempotency-Key` and `If-Match`.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, checkout_body, spawn_app};

#[tokio::test]
async fn a_retry_with_the_same_key_returns_the_first_response_and_appends_nothing() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 100, 0).await;
    let send = || {
        app.client
            .post(format!("{}/v1/inventory/MUG/restock", app.address))
            .bearer_auth(&seller)
            .header("idempotency-key", "restock-42")
            .json(&json!({"quantity": 5}))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let first_position = first.headers()["x-event-position"].clone();
    let first_etag = first.headers()["etag"].clone();
    let first_body: Value = first.json().await.unwrap();
    let count = app.event_count().await;

    let retry = send().await.unwrap();
    assert_eq!(retry.status(), StatusCode::OK);
    assert_eq!(retry.headers()["x-event-position"], first_position);
    assert_eq!(retry.headers()["etag"], first_etag);
    assert_eq!(retry.json::<Value>().await.unwrap(), first_body);
    assert_eq!(app.event_count().await, count);
    assert_eq!(app.stream("inventory", "MUG").await, ["Restocked"]);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 100, 0).await;
    let send = |quantity: i64| {
        app.client
            .post(format!("{}/v1/inventory/MUG/restock", app.address))
            .bearer_auth(&seller)
            .header("idempotency-key", "restock-43")
            .json(&json!({"quantity": quantity}))
            .send()
    };
    assert_eq!(send(5).await.unwrap().status(), StatusCode::OK);
    let count = app.event_count().await;
    assert_problem(send(6).await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(app.event_count().await, count);
}

#[tokio::test]
async fn concurrent_checkouts_with_one_key_place_one_order() {
    let app = spawn_app().await;
    let replica = app.spawn_replica().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 100, 10).await;
    let (_, buyer) = app.account("buyer").await;
    app.add_to_cart(&buyer, "MUG", 2).await;
    let send = |target: &crate::helpers::TestApp| {
        target
            .client
            .post(format!("{}/v1/me/cart/checkout", target.address))
            .bearer_auth(&buyer)
            .header("idempotency-key", "checkout-1")
            .json(&checkout_body())
            .send()
    };
    let (first, second) = tokio::join!(send(&app), send(&replica));
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    assert_eq!(second.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["order_id"], second["order_id"]);
    let orders: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'OrderPlaced'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(orders, 1);
}

#[tokio::test]
async fn keys_of_different_accounts_do_not_collide() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 100, 0).await;
    let admin = app.admin_token().await;
    for token in [&seller, &admin] {
        let response = app
            .client
            .post(format!("{}/v1/inventory/MUG/restock", app.address))
            .bearer_auth(token)
            .header("idempotency-key", "same-key")
            .json(&json!({"quantity": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(app.stream("inventory", "MUG").await.len(), 2);
}

#[tokio::test]
async fn a_stale_if_match_is_412_with_the_current_version() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 100, 3).await;
    let restock = |etag: &str| {
        app.client
            .post(format!("{}/v1/inventory/MUG/restock", app.address))
            .bearer_auth(&seller)
            .header("if-match", etag.to_owned())
            .json(&json!({"quantity": 1}))
            .send()
    };
    let response = restock("\"1\"").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], "\"2\"");
    let count = app.event_count().await;
    let response = restock("\"1\"").await.unwrap();
    assert_eq!(response.headers()["etag"], "\"2\"");
    assert_problem(response, StatusCode::PRECONDITION_FAILED).await;
    assert_eq!(app.event_count().await, count);
}

#[tokio::test]
async fn an_import_retried_with_its_key_answers_the_first_position_and_appends_nothing() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    let ndjson = [
        json!({"sku": "IMP-1", "name": "One", "description": "d", "price": {"amount": 100, "currency": "EUR"}, "category": "mugs", "attributes": {}}),
        json!({"sku": "IMP-2", "name": "Two", "description": "d", "price": {"amount": 200, "currency": "EUR"}, "category": "mugs", "attributes": {}}),
    ]
    .map(|line| line.to_string())
    .join("\n");
    let send = || {
        app.client
            .post(format!("{}/v1/products/import", app.address))
            .bearer_auth(&seller)
            .header("idempotency-key", "import-7")
            .header("content-type", "application/x-ndjson")
            .body(ndjson.clone())
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let position = first.headers().get("x-event-position").cloned();
    let report: Value = first.json().await.unwrap();
    assert_eq!(report["created"], 2, "{report}");
    assert!(
        position.is_some(),
        "the import's answer has no X-Event-Position"
    );
    let count = app.event_count().await;

    let retry = send().await.unwrap();
    assert_eq!(retry.status(), StatusCode::OK);
    assert_eq!(retry.headers().get("x-event-position"), position.as_ref());
    assert_eq!(app.event_count().await, count);
}

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_problem, spawn_app, TestApp};

/// Waits until the checkout saga has confirmed the order (the default payment token is `tok_ok`).
pub async fn confirm(app: &TestApp, order_id: Uuid) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !app
        .stream("order", &order_id.to_string())
        .await
        .contains(&"OrderConfirmed".to_owned())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "order {order_id} was never confirmed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.wait_for_saga(order_id).await;
}

/// A seller, a buyer and a placed order of the seller's mug: `(seller, buyer, order_id)`.
async fn placed_order(app: &TestApp) -> (String, String, Uuid) {
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 1250, 10).await;
    let (_, buyer) = app.account("buyer").await;
    app.add_to_cart(&buyer, "MUG", 1).await;
    let order_id = app.checkout(&buyer).await;
    (seller, buyer, order_id)
}

#[tokio::test]
async fn an_order_is_shipped_delivered_and_returned() {
    let app = spawn_app().await;
    let (seller, buyer, order_id) = placed_order(&app).await;
    confirm(&app, order_id).await;

    let response = app
        .post(
            &format!("/v1/orders/{order_id}/shipments"),
            Some(&seller),
            json!({"carrier": "DHL", "tracking_number": "JD0142"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "shipped");

    let response = app
        .request(
            Method::POST,
            &format!("/v1/orders/{order_id}/delivery"),
            Some(&seller),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], "\"6\"");

    let response = app
        .post(
            &format!("/v1/orders/{order_id}/returns"),
            Some(&buyer),
            json!({"reason": "too small"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap()["status"],
        "returned"
    );
    assert_eq!(
        app.stream("order", &order_id.to_string()).await[..7],
        [
            "OrderPlaced",
            "InventoryReserved",
            "PaymentAuthorized",
            "OrderConfirmed",
            "OrderShipped",
            "OrderDelivered",
            "OrderReturned"
        ]
    );
}

#[tokio::test]
async fn the_buyer_cancels_before_shipping_with_a_reason() {
    let app = spawn_app().await;
    let (_, buyer, order_id) = placed_order(&app).await;
    let response = app
        .post(
            &format!("/v1/orders/{order_id}/cancel"),
            Some(&buyer),
            json!({"reason": "ordered twice"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "cancelled");
    assert_eq!(body["cancellation_reason"], "ordered twice");
}

#[tokio::test]
async fn an_admin_cancels_without_a_body() {
    let app = spawn_app().await;
    let (_, _, order_id) = placed_order(&app).await;
    let admin = app.admin_token().await;
    let response = app
        .request(
            Method::POST,
            &format!("/v1/orders/{order_id}/cancel"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap()["cancellation_reason"],
        "cancelled by an administrator"
    );
}

#[tokio::test]
async fn a_shipped_order_cannot_be_cancelled() {
    let app = spawn_app().await;
    let (seller, buyer, order_id) = placed_order(&app).await;
    confirm(&app, order_id).await;
    app.post(
        &format!("/v1/orders/{order_id}/shipments"),
        Some(&seller),
        json!({"carrier": "UPS", "tracking_number": "1Z"}),
    )
    .await;
    let before = app.event_count().await;
    let response = app
        .post(
            &format!("/v1/orders/{order_id}/cancel"),
            Some(&buyer),
            json!({}),
        )
        .await;
    assert_problem(response, StatusCode::CONFLICT).await;
    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn an_unconfirmed_order_cannot_ship() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    // Nothing in stock: the order never gets past `pending` (then is cancelled).
    app.product(&seller, "GONE", 100, 0).await;
    let (_, buyer) = app.account("buyer").await;
    app.add_to_cart(&buyer, "GONE", 1).await;
    let order_id = app.checkout(&buyer).await;
    let response = app
        .post(
            &format!("/v1/orders/{order_id}/shipments"),
            Some(&seller),
            json!({"carrier": "UPS", "tracking_number": "1Z"}),
        )
        .await;
    assert_problem(response, StatusCode::CONFLICT).await;
}

#[tokio::test]
async fn only_the_sellers_of_its_lines_ship_an_order() {
    let app = spawn_app().await;
    let (_, buyer, order_id) = placed_order(&app).await;
    confirm(&app, order_id).await;
    let (_, stranger) = app.account("seller").await;
    let before = app.event_count().await;
    let path = format!("/v1/orders/{order_id}/shipments");
    let response = app
        .post(
            &path,
            Some(&stranger),
            json!({"carrier": "UPS", "tracking_number": "1Z"}),
        )
        .await;
    assert_problem(response, StatusCode::NOT_FOUND).await;
    let response = app
        .post(
            &path,
            Some(&buyer),
            json!({"carrier": "UPS", "tracking_number": "1Z"}),
        )
        .await;
    assert_problem(response, StatusCode::FORBIDDEN).await;
    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn an_unknown_order_is_404() {
    let app = spawn_app().await;
    let (_, buyer) = app.account("buyer").await;
    let response = app
        .post(
            &format!("/v1/orders/{}/cancel", Uuid::now_v7()),
            Some(&buyer),
            json!({}),
        )
        .await;
    assert_problem(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn a_buyer_reviews_a_delivered_product_once() {
    let app = spawn_app().await;
    let (seller, buyer, order_id) = placed_order(&app).await;
    let product_id: String =
        sqlx::query_scalar("SELECT product_id::text FROM sku_claims WHERE sku = 'MUG'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let path = format!("/v1/products/{product_id}/reviews");
    let review = json!({"rating": 5, "title": "Keeps coffee hot", "body": "Sturdy."});

    confirm(&app, order_id).await;
    // Not delivered yet: refused, nothing appended.
    let before = app.event_count().await;
    assert_problem(
        app.post(&path, Some(&buyer), review.clone()).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_eq!(app.event_count().await, before);

    app.post(
        &format!("/v1/orders/{order_id}/shipments"),
        Some(&seller),
        json!({"carrier": "DHL", "tracking_number": "1"}),
    )
    .await;
    app.request(
        Method::POST,
        &format!("/v1/orders/{order_id}/delivery"),
        Some(&seller),
        None,
    )
    .await;

    let response = app.post(&path, Some(&buyer), review.clone()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.json::<Value>().await.unwrap()["rating"], 5);
    assert_problem(
        app.post(&path, Some(&buyer), review.clone()).await,
        StatusCode::CONFLICT,
    )
    .await;
    let bad = json!({"rating": 6, "title": "x"});
    let (_, other) = app.account("buyer").await;
    assert_problem(
        app.post(&path, Some(&other), bad).await,
        StatusCode::FORBIDDEN,
    )
    .await;
}

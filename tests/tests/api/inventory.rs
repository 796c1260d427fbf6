use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn the_seller_restocks_and_adjusts_their_sku() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "LAMP", 3900, 0).await;
    let response = app
        .post(
            "/v1/inventory/LAMP/restock",
            Some(&seller),
            json!({"quantity": 10}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"sku": "LAMP", "on_hand": 10, "reserved": 0, "available": 10})
    );

    let response = app
        .post(
            "/v1/inventory/LAMP/adjust",
            Some(&seller),
            json!({"delta": -3, "reason": "stock-take"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], "\"2\"");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["on_hand"], 7);
    assert_eq!(
        app.stream("inventory", "LAMP").await,
        ["Restocked", "Adjusted"]
    );
}

#[tokio::test]
async fn an_admin_restocks_any_sku() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "LAMP", 3900, 0).await;
    let admin = app.admin_token().await;
    let response = app
        .post(
            "/v1/inventory/LAMP/restock",
            Some(&admin),
            json!({"quantity": 4}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_adjustment_never_takes_stock_below_zero() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "LAMP", 3900, 2).await;
    let before = app.event_count().await;
    let response = app
        .post(
            "/v1/inventory/LAMP/adjust",
            Some(&seller),
            json!({"delta": -3, "reason": "lost"}),
        )
        .await;
    assert_problem(response, StatusCode::CONFLICT).await;
    assert_eq!(app.event_count().await, before);
}

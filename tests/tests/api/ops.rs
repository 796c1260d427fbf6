//! Health, metrics and the OpenAPI document.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::spawn_app;

#[tokio::test]
async fn liveness_and_readiness_answer() {
    let app = spawn_app().await;
    let live = app.request(Method::GET, "/health/live", None, None).await;
    assert_eq!(live.status(), StatusCode::OK);
    let ready = app.request(Method::GET, "/health/ready", None, None).await;
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(
        ready.json::<Value>().await.unwrap(),
        json!({"postgres": "up", "nats": "up"})
    );
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_commands_by_outcome() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 100, 1).await;
    let response = app
        .post(
            "/v1/inventory/MUG/restock",
            Some(&seller),
            json!({"quantity": 0}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let at = app.last_position().await;
    app.read_json("/v1/inventory/MUG", None, at).await;
    let text = app
        .request(Method::GET, "/metrics", None, None)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            r#"http_requests_total{method="POST",route="/v1/inventory/{sku}/restock",status="200"}"#
        ),
        "{text}"
    );
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains(r#"commerce_projection_position{projection="inventory"}"#),
        "{text}"
    );
    assert!(text.contains("commerce_projection_lag_seconds"), "{text}");
    assert!(
        text.contains(r#"commerce_commands_total{aggregate="inventory",outcome="accepted"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"commerce_commands_total{aggregate="inventory",outcome="rejected"}"#),
        "{text}"
    );
}

#[tokio::test]
async fn the_openapi_document_covers_every_route() {
    let app = spawn_app().await;
    let doc: Value = app
        .request(Method::GET, "/openapi.json", None, None)
        .await
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/accounts", "post"),
        ("/v1/auth/token", "post"),
        ("/v1/products", "post"),
        ("/v1/products/{id}", "patch"),
        ("/v1/products/{id}", "delete"),
        ("/v1/products/import", "post"),
        ("/v1/products/{id}/reviews", "post"),
        ("/v1/inventory/{sku}/restock", "post"),
        ("/v1/inventory/{sku}/adjust", "post"),
        ("/v1/me/cart/items/{sku}", "put"),
        ("/v1/me/cart/items/{sku}", "delete"),
        ("/v1/me/cart/items/{sku}/move-to-wishlist", "post"),
        ("/v1/me/wishlist/items/{sku}", "put"),
        ("/v1/me/wishlist/items/{sku}", "delete"),
        ("/v1/me/cart/checkout", "post"),
        ("/v1/orders/{id}/cancel", "post"),
        ("/v1/orders/{id}/shipments", "post"),
        ("/v1/orders/{id}/delivery", "post"),
        ("/v1/orders/{id}/returns", "post"),
        ("/v1/products", "get"),
        ("/v1/products/{id}", "get"),
        ("/v1/products/{id}/reviews", "get"),
        ("/v1/categories", "get"),
        ("/v1/inventory/{sku}", "get"),
        ("/v1/me/cart", "get"),
        ("/v1/me/wishlist", "get"),
        ("/v1/me/orders", "get"),
        ("/v1/orders/{id}", "get"),
        ("/v1/orders/{id}/payment", "get"),
        ("/v1/me/notifications", "get"),
        ("/v1/seller/orders", "get"),
        ("/v1/recommendations", "get"),
        ("/v1/me/recommendations", "get"),
    ] {
        let operation = &paths.get(path).unwrap_or_else(|| panic!("{path} missing"))[method];
        assert!(operation.is_object(), "{method} {path} missing");
        // A command documents its errors; a read at least its answer.
        let documented = operation["responses"].as_object().unwrap().len();
        assert!(
            documented >= if method == "get" { 1 } else { 2 },
            "{method} {path} documents too little"
        );
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    let docs = app.request(Method::GET, "/docs", None, None).await;
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.unwrap().contains("openapi"));
}

#[tokio::test]
async fn an_unknown_route_is_a_404_problem() {
    let app = spawn_app().await;
    let response = app.request(Method::GET, "/v1/nowhere", None, None).await;
    crate::helpers::assert_problem(response, StatusCode::NOT_FOUND).await;
}

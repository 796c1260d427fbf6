use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app};

fn tee() -> Value {
    json!({"sku": "TEE", "name": "Tee", "description": "Soft", "price": {"amount": 1999, "currency": "EUR"},
           "category": "Apparel/Shirts", "attributes": {"material": "cotton", "organic": true},
           "variants": [{"sku": "TEE-M", "attributes": {"size": "M"}},
                        {"sku": "TEE-L", "price": {"amount": 2199, "currency": "EUR"}, "attributes": {"size": "L"}}]})
}

#[tokio::test]
async fn a_seller_creates_a_product_with_attributes_and_variants() {
    let app = spawn_app().await;
    let (seller_id, seller) = app.account("seller").await;
    let response = app.post("/v1/products", Some(&seller), tee()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(response.headers()["etag"], "\"1\"");
    let body: Value = response.json().await.unwrap();
    let id = body["product_id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/products/{id}"));
    assert_eq!(body["sku"], "TEE");
    assert_eq!(body["name"], "Tee");
    assert_eq!(body["price"], json!({"amount": 1999, "currency": "EUR"}));
    assert_eq!(body["category"], "apparel/shirts");
    assert_eq!(body["attributes"]["organic"], true);
    assert_eq!(body["variants"][1]["sku"], "TEE-L");
    assert_eq!(body["seller_id"], seller_id.to_string());
    assert_eq!(app.stream("product", id).await, ["ProductCreated"]);
}

#[tokio::test]
async fn the_owner_changes_and_delists_a_product() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    let id = app.product(&seller, "MUG", 1000, 0).await;
    let response = app
        .request(
            Method::PATCH,
            &format!("/v1/products/{id}"),
            Some(&seller),
            Some(json!({"price": {"amount": 900, "currency": "EUR"}, "name": "Big mug"})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], "\"2\"");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["price"]["amount"], 900);
    assert_eq!(body["name"], "Big mug");

    let response = app
        .request(
            Method::DELETE,
            &format!("/v1/products/{id}"),
            Some(&seller),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.stream("product", &id.to_string()).await,
        ["ProductCreated", "ProductUpdated", "ProductDelisted"]
    );

    // A delisted product cannot go into a cart.
    let (_, buyer) = app.account("buyer").await;
    let response = app
        .put(
            "/v1/me/cart/items/MUG",
            Some(&buyer),
            json!({"quantity": 1}),
        )
        .await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
}

#[tokio::test]
async fn a_sku_belongs_to_one_product() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "TEE", 1000, 0).await;
    let (_, other) = app.account("seller").await;
    let before = app.event_count().await;
    let response = app.post("/v1/products", Some(&other), tee()).await;
    assert_problem(response, StatusCode::CONFLICT).await;
    assert_eq!(app.event_count().await, before);
    // The refused product claimed none of its SKUs.
    let claimed: i64 = sqlx::query_scalar("SELECT count(*) FROM sku_claims")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(claimed, 1);
}

#[tokio::test]
async fn an_import_creates_the_good_lines_and_reports_the_bad_ones() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    let lines = [
        json!({"sku": "A-1", "name": "A", "price": {"amount": 100, "currency": "EUR"}, "category": "x"}).to_string(),
        "{not json".to_owned(),
        json!({"sku": "B-1", "name": "B", "price": {"amount": -5, "currency": "EUR"}, "category": "x"}).to_string(),
        String::new(),
        json!({"sku": "C-1", "name": "C", "price": {"amount": 300, "currency": "EUR"}, "category": "y", "attributes": {"flavour": "mint"}}).to_string(),
        json!({"sku": "A-1", "name": "A again", "price": {"amount": 100, "currency": "EUR"}, "category": "x"}).to_string(),
    ];
    let response = app
        .client
        .post(format!("{}/v1/products/import", app.address))
        .bearer_auth(&seller)
        .header("content-type", "application/x-ndjson")
        .body(lines.join("\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["created"], 2);
    assert_eq!(report["failed"], 3);
    let statuses: Vec<(i64, i64)> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_i64().unwrap(), r["status"].as_i64().unwrap()))
        .collect();
    assert_eq!(statuses, [(1, 201), (2, 422), (3, 422), (5, 201), (6, 409)]);
    let products: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'ProductCreated'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(products, 2);
}

#[tokio::test]
async fn another_seller_cannot_change_or_delist_a_product() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    let id = app.product(&seller, "MUG", 1000, 0).await;
    let (_, other) = app.account("seller").await;
    let before = app.event_count().await;
    let response = app
        .request(
            Method::PATCH,
            &format!("/v1/products/{id}"),
            Some(&other),
            Some(json!({"name": "Mine"})),
        )
        .await;
    assert_problem(response, StatusCode::FORBIDDEN).await;
    let response = app
        .request(
            Method::DELETE,
            &format!("/v1/products/{id}"),
            Some(&other),
            None,
        )
        .await;
    assert_problem(response, StatusCode::FORBIDDEN).await;
    assert_eq!(app.event_count().await, before);
}

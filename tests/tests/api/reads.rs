//! Command → query round trips for every read model, waiting with `X-Min-Position` (no sleeps).

use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_problem, spawn_app, TestApp};

/// The position a command response says its events reached.
fn position(response: &Response) -> i64 {
    response.headers()["x-event-position"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

impl TestApp {
    /// GET `path` once the read models have applied `position`.
    pub async fn read(&self, path: &str, token: Option<&str>, position: i64) -> Response {
        let mut request = self
            .client
            .get(format!("{}{path}", self.address))
            .header("x-min-position", position.to_string());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    pub async fn read_json(&self, path: &str, token: Option<&str>, position: i64) -> Value {
        let response = self.read(path, token, position).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.unwrap()
    }

    /// The highest position in the store.
    pub async fn last_position(&self) -> i64 {
        sqlx::query_scalar("SELECT COALESCE(max(position), 0) FROM events")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn the_cart_and_wishlist_read_back_what_was_written() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 1250, 5).await;
    app.product(&seller, "TEE", 1999, 5).await;
    let (_, buyer) = app.account("buyer").await;
    app.add_to_cart(&buyer, "MUG", 2).await;
    let response = app
        .request(Method::PUT, "/v1/me/wishlist/items/TEE", Some(&buyer), None)
        .await;
    let at = position(&response);

    let cart = app.read_json("/v1/me/cart", Some(&buyer), at).await;
    assert_eq!(cart["items"][0]["sku"], "MUG");
    assert_eq!(cart["items"][0]["quantity"], 2);
    assert_eq!(
        cart["items"][0]["unit_price"],
        json!({"amount": 1250, "currency": "EUR"})
    );
    assert_eq!(cart["total"], json!({"amount": 2500, "currency": "EUR"}));
    let wishlist = app.read_json("/v1/me/wishlist", Some(&buyer), at).await;
    assert_eq!(wishlist["items"], json!([{"sku": "TEE"}]));
}

#[tokio::test]
async fn an_order_reads_back_with_its_timeline_in_the_history_and_the_sellers_queue() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 1250, 5).await;
    let (buyer_id, buyer) = app.account("buyer").await;
    app.add_to_cart(&buyer, "MUG", 2).await;
    let order_id = app.checkout(&buyer).await;
    crate::orders::confirm(&app, order_id).await;
    let response = app
        .post(
            &format!("/v1/orders/{order_id}/cancel"),
            Some(&buyer),
            json!({"reason": "found it cheaper"}),
        )
        .await;
    let at = position(&response);

    let order = app
        .read_json(&format!("/v1/orders/{order_id}"), Some(&buyer), at)
        .await;
    assert_eq!(order["order_id"], order_id.to_string());
    assert_eq!(order["buyer_id"], buyer_id.to_string());
    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["cancellation_reason"], "found it cheaper");
    assert_eq!(order["total"], json!({"amount": 2500, "currency": "EUR"}));
    assert_eq!(order["lines"][0]["sku"], "MUG");
    let steps: Vec<&str> = order["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "pending",
            "reserved",
            "authorized",
            "confirmed",
            "cancelled"
        ]
    );
    assert!(order["timeline"][0]["at"].is_string());

    let history = app.read_json("/v1/me/orders", Some(&buyer), at).await;
    assert_eq!(history["items"][0]["order_id"], order_id.to_string());
    let queue = app
        .read_json("/v1/seller/orders?status=cancelled", Some(&seller), at)
        .await;
    assert_eq!(queue["items"].as_array().unwrap().len(), 1);
    let queue = app
        .read_json("/v1/seller/orders?status=confirmed", Some(&seller), at)
        .await;
    assert_eq!(queue["items"], json!([]));
    // The seller of its lines sees it; another buyer is told it does not exist.
    app.read_json(&format!("/v1/orders/{order_id}"), Some(&seller), at)
        .await;
    let (_, other) = app.account("buyer").await;
    assert_problem(
        app.read(&format!("/v1/orders/{order_id}"), Some(&other), at)
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn purchase_history_is_newest_first_and_paginated() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 100, 50).await;
    let (_, buyer) = app.account("buyer").await;
    let mut orders = Vec::new();
    for _ in 0..3 {
        app.add_to_cart(&buyer, "MUG", 1).await;
        orders.push(app.checkout(&buyer).await);
    }
    let at = app.last_position().await;
    let first = app
        .read_json("/v1/me/orders?limit=2", Some(&buyer), at)
        .await;
    let ids: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [orders[2].to_string(), orders[1].to_string()]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = app
        .read_json(
            &format!("/v1/me/orders?limit=2&cursor={cursor}"),
            Some(&buyer),
            at,
        )
        .await;
    assert_eq!(second["items"][0]["order_id"], orders[0].to_string());
    assert!(second["next_cursor"].is_null());
}

#[tokio::test]
async fn inventory_levels_read_back() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "LAMP", 3900, 0).await;
    let response = app
        .post(
            "/v1/inventory/LAMP/restock",
            Some(&seller),
            json!({"quantity": 7}),
        )
        .await;
    let stock = app
        .read_json("/v1/inventory/LAMP", None, position(&response))
        .await;
    assert_eq!(
        stock,
        json!({"sku": "LAMP", "on_hand": 7, "reserved": 0, "available": 7})
    );
    assert_problem(
        app.read("/v1/inventory/NOPE", None, 0).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn a_product_reads_back_with_variants_stock_and_categories() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    let response = app
        .post(
            "/v1/products",
            Some(&seller),
            json!({"sku": "TEE", "name": "Tee", "price": {"amount": 1999, "currency": "EUR"},
            "category": "apparel/shirts", "attributes": {"material": "cotton"},
            "variants": [{"sku": "TEE-M", "attributes": {"size": "M"}}]}),
        )
        .await;
    let id = response.json::<Value>().await.unwrap()["product_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.product(&seller, "HOODIE", 4999, 0).await;
    let response = app
        .post(
            "/v1/inventory/TEE-M/restock",
            Some(&seller),
            json!({"quantity": 3}),
        )
        .await;
    let at = position(&response);

    let response = app.read(&format!("/v1/products/{id}"), None, at).await;
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let product: Value = response.json().await.unwrap();
    assert_eq!(product["sku"], "TEE");
    assert_eq!(product["price"], json!({"amount": 1999, "currency": "EUR"}));
    assert_eq!(product["attributes"]["material"], "cotton");
    assert_eq!(product["variants"][0]["sku"], "TEE-M");
    assert_eq!(product["availability"]["TEE-M"]["available"], 3);
    assert_eq!(product["availability"]["TEE"]["available"], 0);
    assert_eq!(product["rating"]["count"], 0);
    let unchanged = app
        .client
        .get(format!("{}/v1/products/{id}", app.address))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);

    let categories = app.read_json("/v1/categories", None, at).await;
    let apparel = categories
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "apparel")
        .unwrap();
    assert_eq!(apparel["product_count"], 1);
    assert_eq!(apparel["children"][0]["path"], "apparel/shirts");
    let test = categories
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "test")
        .unwrap();
    assert_eq!(test["product_count"], 1);
}

#[tokio::test]
async fn notifications_follow_the_order() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 1250, 5).await;
    let (_, buyer) = app.account("buyer").await;
    app.add_to_cart(&buyer, "MUG", 1).await;
    let order_id = app.checkout(&buyer).await;
    crate::orders::confirm(&app, order_id).await;
    let response = app
        .post(
            &format!("/v1/orders/{order_id}/cancel"),
            Some(&buyer),
            json!({}),
        )
        .await;
    let notes = app
        .read_json("/v1/me/notifications", Some(&buyer), position(&response))
        .await;
    let kinds: Vec<&str> = notes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["order_cancelled", "order_confirmed", "order_placed"]
    );
    // The seller heard about the confirmed order too.
    let notes = app
        .read_json("/v1/me/notifications", Some(&seller), position(&response))
        .await;
    assert_eq!(notes["items"][0]["kind"], "order_to_ship");
    assert_eq!(notes["items"][0]["order_id"], order_id.to_string());
}

#[tokio::test]
async fn a_payment_reads_back_with_its_history() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 1250, 5).await;
    let (buyer, order_id) = app.order_with("MUG", 1, "tok_decline").await;
    app.wait_for_order(order_id, &buyer, &["cancelled"]).await;
    app.wait_for_saga(order_id).await;
    let at = app.last_position().await;
    let payment = app.payment(order_id, &buyer, at).await;
    assert_eq!(payment["status"], "declined");
    assert_eq!(
        payment["amount"],
        json!({"amount": 1250, "currency": "EUR"})
    );
    let steps: Vec<&str> = payment["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["requested", "declined"]);
    let notes = app
        .read_json("/v1/me/notifications", Some(&buyer), at)
        .await;
    let kinds: Vec<&str> = notes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["order_cancelled", "payment_failed", "order_placed"]);
}

#[tokio::test]
async fn popular_and_bought_together_recommendations() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    let mug = app.product(&seller, "MUG", 100, 50).await;
    let coffee = app.product(&seller, "COFFEE", 900, 50).await;
    let lamp = app.product(&seller, "LAMP", 3000, 50).await;
    let (_, first) = app.account("buyer").await;
    app.add_to_cart(&first, "MUG", 3).await;
    app.add_to_cart(&first, "COFFEE", 1).await;
    app.checkout(&first).await;
    let (_, second) = app.account("buyer").await;
    app.add_to_cart(&second, "LAMP", 1).await;
    app.checkout(&second).await;
    let (_, third) = app.account("buyer").await;
    app.add_to_cart(&third, "MUG", 1).await;
    let at = app.last_position().await;

    let popular = app.read_json("/v1/recommendations", None, at).await;
    let ids: Vec<&str> = popular["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["product_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids[0], mug.to_string());
    assert_eq!(ids.len(), 3);
    // The third buyer carted a mug: coffee was bought with mugs.
    let mine = app
        .read_json("/v1/me/recommendations", Some(&third), at)
        .await;
    assert_eq!(mine["items"][0]["product_id"], coffee.to_string());
    assert_eq!(mine["items"][0]["reason"], "bought_together");
    assert!(mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["product_id"] == lamp.to_string()));
}

#[tokio::test]
async fn reviews_read_back_newest_first_with_the_rating_summary() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    let product_id = app.product(&seller, "MUG", 100, 50).await;
    let (_, buyer) = app.account("buyer").await;
    app.add_to_cart(&buyer, "MUG", 1).await;
    let order_id = app.checkout(&buyer).await;
    crate::orders::confirm(&app, order_id).await;
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
    let response = app
        .post(
            &format!("/v1/products/{product_id}/reviews"),
            Some(&buyer),
            json!({"rating": 4, "title": "Good mug"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let at = position(&response);
    let reviews = app
        .read_json(&format!("/v1/products/{product_id}/reviews"), None, at)
        .await;
    assert_eq!(reviews["items"][0]["title"], "Good mug");
    let product = app
        .read_json(&format!("/v1/products/{product_id}"), None, at)
        .await;
    assert_eq!(product["rating"], json!({"count": 1, "average": 4.0}));
}

#[tokio::test]
async fn a_position_not_reached_in_time_is_503_with_retry_after() {
    let app = spawn_app().await;
    let response = app.read("/v1/categories", None, 1_000_000).await;
    assert!(response.headers().get("retry-after").is_some());
    assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
}

#[tokio::test]
async fn reads_need_the_right_account() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    assert_problem(
        app.read("/v1/me/cart", None, 0).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_problem(
        app.read("/v1/me/cart", Some(&seller), 0).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let (_, buyer) = app.account("buyer").await;
    assert_problem(
        app.read("/v1/seller/orders", Some(&buyer), 0).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_problem(
        app.read(&format!("/v1/orders/{}", Uuid::now_v7()), Some(&buyer), 0)
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

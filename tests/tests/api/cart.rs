use commerce_domain::cart::{Cart, CartCommand};
use commerce_domain::order::OrderLine;
use commerce_domain::OrderId;
use commerce_store::{CommandOptions, Metadata, Repository};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_problem, checkout_body, spawn_app, TestApp};

#[tokio::test]
async fn a_buyer_fills_changes_and_empties_a_cart() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 1250, 10).await;
    app.product(&seller, "TEE", 1999, 10).await;
    let (buyer_id, buyer) = app.account("buyer").await;

    let response = app
        .put(
            "/v1/me/cart/items/MUG",
            Some(&buyer),
            json!({"quantity": 2}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .put(
            "/v1/me/cart/items/TEE",
            Some(&buyer),
            json!({"quantity": 1}),
        )
        .await;
    let cart: Value = response.json().await.unwrap();
    assert_eq!(cart["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        cart["items"][0],
        json!({"sku": "MUG", "product_id": cart["items"][0]["product_id"], "quantity": 2,
        "unit_price": {"amount": 1250, "currency": "EUR"}, "line_total": {"amount": 2500, "currency": "EUR"}})
    );
    assert_eq!(cart["total"], json!({"amount": 4499, "currency": "EUR"}));

    let response = app
        .put(
            "/v1/me/cart/items/MUG",
            Some(&buyer),
            json!({"quantity": 0}),
        )
        .await;
    let cart: Value = response.json().await.unwrap();
    assert_eq!(cart["items"].as_array().unwrap().len(), 1);

    let response = app
        .request(Method::DELETE, "/v1/me/cart/items/TEE", Some(&buyer), None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let cart: Value = response.json().await.unwrap();
    assert_eq!(cart["items"], json!([]));
    assert_eq!(
        app.stream("cart", &buyer_id.to_string()).await,
        [
            "ItemQuantitySet",
            "ItemQuantitySet",
            "ItemRemoved",
            "ItemRemoved"
        ]
    );
}

#[tokio::test]
async fn lines_move_to_the_wishlist_and_back_out() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 1250, 10).await;
    app.product(&seller, "TEE", 1999, 10).await;
    let (buyer_id, buyer) = app.account("buyer").await;
    app.add_to_cart(&buyer, "MUG", 1).await;

    let response = app
        .request(
            Method::POST,
            "/v1/me/cart/items/MUG/move-to-wishlist",
            Some(&buyer),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let cart: Value = response.json().await.unwrap();
    assert_eq!(cart["items"], json!([]));
    assert_eq!(cart["wishlist"], json!(["MUG"]));

    let response = app
        .request(Method::PUT, "/v1/me/wishlist/items/TEE", Some(&buyer), None)
        .await;
    let cart: Value = response.json().await.unwrap();
    assert_eq!(cart["wishlist"], json!(["MUG", "TEE"]));
    let response = app
        .request(
            Method::DELETE,
            "/v1/me/wishlist/items/MUG",
            Some(&buyer),
            None,
        )
        .await;
    let cart: Value = response.json().await.unwrap();
    assert_eq!(cart["wishlist"], json!(["TEE"]));
    assert_eq!(
        app.stream("cart", &buyer_id.to_string()).await,
        [
            "ItemQuantitySet",
            "ItemMovedToWishlist",
            "WishlistItemAdded",
            "WishlistItemRemoved"
        ]
    );
}

#[tokio::test]
async fn checkout_places_a_priced_order_and_closes_the_cart() {
    let app = spawn_app().await;
    let (seller_id, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 1250, 10).await;
    let (buyer_id, buyer) = app.account("buyer").await;
    app.add_to_cart(&buyer, "MUG", 3).await;

    let response = app
        .post("/v1/me/cart/checkout", Some(&buyer), checkout_body())
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let position: i64 = response.headers()["x-event-position"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let order_id = response.json::<Value>().await.unwrap()["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(location, format!("/v1/orders/{order_id}"));

    let placed: Value = sqlx::query_scalar(
        "SELECT payload FROM events WHERE aggregate_type = 'order' AND aggregate_id = $1",
    )
    .bind(&order_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let placed = &placed["OrderPlaced"];
    assert_eq!(placed["buyer_id"], buyer_id.to_string());
    assert_eq!(placed["total"], json!({"amount": 3750, "currency": "EUR"}));
    assert_eq!(placed["lines"][0]["quantity"], 3);
    assert_eq!(placed["lines"][0]["seller_id"], seller_id.to_string());
    let (kind, id): (String, String) =
        sqlx::query_as("SELECT event_type, aggregate_id FROM events WHERE position = $1")
            .bind(position)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(
        kind == "OrderPlaced" && id == order_id || kind == "CheckedOut",
        "{kind} {id}"
    );
    assert_eq!(
        app.stream("cart", &buyer_id.to_string())
            .await
            .last()
            .unwrap(),
        "CheckedOut"
    );

    // The cart is closed: checking out again finds it empty.
    let response = app
        .post("/v1/me/cart/checkout", Some(&buyer), checkout_body())
        .await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
}

#[tokio::test]
async fn checkout_refuses_a_line_delisted_since_it_was_carted() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    let id = app.product(&seller, "MUG", 1250, 10).await;
    let (_, buyer) = app.account("buyer").await;
    app.add_to_cart(&buyer, "MUG", 1).await;
    app.request(
        Method::DELETE,
        &format!("/v1/products/{id}"),
        Some(&seller),
        None,
    )
    .await;
    let before = app.event_count().await;
    let response = app
        .post("/v1/me/cart/checkout", Some(&buyer), checkout_body())
        .await;
    assert_problem(response, StatusCode::CONFLICT).await;
    assert_eq!(app.event_count().await, before);
}

impl TestApp {
    /// The buyer's cart as `GET /v1/me/cart` shows it once everything in the store is applied.
    async fn cart(&self, buyer: &str) -> Value {
        let at = self.last_position().await;
        self.read_json("/v1/me/cart", Some(buyer), at).await
    }

    /// Checks the cart out paying with `token`: the order id.
    async fn checkout_paying(&self, buyer: &str, token: &str) -> Uuid {
        let mut body = checkout_body();
        body["payment_token"] = json!(token);
        let response = self.post("/v1/me/cart/checkout", Some(buyer), body).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        response.json::<Value>().await.unwrap()["order_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }
}

/// `(sku, quantity)` of each line of a cart as read.
fn lines(cart: &Value) -> Vec<(String, i64)> {
    cart["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            (
                item["sku"].as_str().unwrap().to_owned(),
                item["quantity"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn etag(response: &Response) -> String {
    response.headers()["etag"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_declined_checkout_gives_the_buyer_their_cart_back_once() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 1250, 10).await;
    app.product(&seller, "TEE", 1999, 10).await;
    let (buyer_id, buyer) = app.account("buyer").await;
    app.add_to_cart(&buyer, "MUG", 2).await;
    app.add_to_cart(&buyer, "TEE", 1).await;

    let order_id = app.checkout_paying(&buyer, "tok_decline").await;
    let order = app.wait_for_order(order_id, &buyer, &["cancelled"]).await;
    app.wait_for_saga(order_id).await;
    let cart = app.cart(&buyer).await;
    assert_eq!(
        lines(&cart),
        [("MUG".to_owned(), 2), ("TEE".to_owned(), 1)],
        "{cart}"
    );
    assert_eq!(cart["total"], json!({"amount": 4499, "currency": "EUR"}));
    assert_eq!(cart["warnings"], json!([]));
    let stream = app.stream("cart", &buyer_id.to_string()).await;
    assert_eq!(stream[stream.len() - 2..], ["CheckedOut", "CartRestored"]);
    let saga = app.stream("checkout_saga", &order_id.to_string()).await;
    assert_eq!(
        saga[saga.len() - 3..],
        ["OrderCancelled", "CartRestored", "SagaCompleted"]
    );

    // The compensation delivered again gives nothing back twice.
    let order_lines: Vec<OrderLine> = serde_json::from_value(order["lines"].clone()).unwrap();
    let metadata = Metadata {
        correlation_id: order_id,
        causation_id: Uuid::now_v7(),
        actor: None,
        idempotency_key: None,
        ..Metadata::default()
    };
    Repository::<Cart>::new(app.pool.clone())
        .execute(
            &buyer_id.to_string(),
            CartCommand::Restore {
                order_id: OrderId(order_id),
                lines: order_lines,
            },
            CommandOptions::new(metadata),
        )
        .await
        .unwrap();
    assert_eq!(app.stream("cart", &buyer_id.to_string()).await, stream);
    assert_eq!(lines(&app.cart(&buyer).await), lines(&cart));

    // And the cart given back checks out again.
    let again = app.checkout_paying(&buyer, "tok_ok").await;
    let order = app.wait_for_order(again, &buyer, &["confirmed"]).await;
    assert_eq!(order["total"], json!({"amount": 4499, "currency": "EUR"}));
}

#[tokio::test]
async fn a_quantity_above_the_stock_is_flagged_and_an_out_of_stock_checkout_gives_the_cart_back() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 1250, 10).await;
    app.product(&seller, "LAST", 500, 18).await;
    let (_, buyer) = app.account("buyer").await;
    app.add_to_cart(&buyer, "MUG", 1).await;
    app.add_to_cart(&buyer, "LAST", 500).await;

    let cart = app.cart(&buyer).await;
    assert_eq!(cart["items"][0]["sku"], "LAST");
    assert_eq!(cart["items"][0]["available"], 18);
    assert_eq!(cart["items"][1]["available"], 10);
    assert_eq!(
        cart["warnings"],
        json!([{"sku": "LAST", "code": "insufficient_stock", "quantity": 500, "available": 18,
                "detail": "only 18 of the 500 units of LAST in the cart are available"}])
    );

    let order_id = app.checkout_paying(&buyer, "tok_ok").await;
    let order = app.wait_for_order(order_id, &buyer, &["cancelled"]).await;
    assert!(
        order["cancellation_reason"]
            .as_str()
            .unwrap()
            .contains("out of stock: LAST"),
        "{order}"
    );
    app.wait_for_saga(order_id).await;
    let cart = app.cart(&buyer).await;
    assert_eq!(
        lines(&cart),
        [("LAST".to_owned(), 500), ("MUG".to_owned(), 1)],
        "{cart}"
    );
    assert_eq!(cart["warnings"][0]["code"], "insufficient_stock");
    assert_eq!(app.stock("MUG").await["reserved"], 0);
}

#[tokio::test]
async fn cancelling_a_confirmed_order_merges_its_lines_into_the_new_cart() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 1250, 10).await;
    app.product(&seller, "TEE", 1999, 10).await;
    let (buyer, order_id) = app.order_with("MUG", 3, "tok_ok").await;
    app.wait_for_order(order_id, &buyer, &["confirmed"]).await;
    app.wait_for_saga(order_id).await;
    // Meanwhile the buyer filled a new cart, with one of the same mugs.
    app.add_to_cart(&buyer, "MUG", 1).await;
    app.add_to_cart(&buyer, "TEE", 2).await;

    // Cancelled with the ETag of the order as read.
    let at = app.last_position().await;
    let read = app
        .read(&format!("/v1/orders/{order_id}"), Some(&buyer), at)
        .await;
    let tag = etag(&read);
    let cancel = |tag: String| {
        app.client
            .post(format!("{}/v1/orders/{order_id}/cancel", app.address))
            .bearer_auth(&buyer)
            .header("if-match", tag)
            .send()
    };
    let response = cancel(tag.clone()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    app.wait_for_order(order_id, &buyer, &["cancelled"]).await;
    app.wait_for_saga(order_id).await;

    // The larger quantity of a SKU in both, not the sum; the rest as it was.
    let cart = app.cart(&buyer).await;
    assert_eq!(
        lines(&cart),
        [("MUG".to_owned(), 3), ("TEE".to_owned(), 2)],
        "{cart}"
    );
    assert_eq!(app.stock("MUG").await["on_hand"], 10);
}

#[tokio::test]
async fn a_sku_the_shop_cannot_sell_is_refused() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    let response = app
        .post(
            "/v1/products",
            Some(&seller),
            json!({"sku": "TEE", "name": "Tee", "description": "Soft", "price": {"amount": 1999, "currency": "EUR"},
                   "category": "Apparel/Shirts", "attributes": {},
                   "variants": [{"sku": "TEE-M", "attributes": {"size": "M"}}]}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    app.post(
        "/v1/inventory/TEE-M/restock",
        Some(&seller),
        json!({"quantity": 5}),
    )
    .await;
    let mug = app.product(&seller, "MUG", 1250, 10).await;
    app.request(
        Method::DELETE,
        &format!("/v1/products/{mug}"),
        Some(&seller),
        None,
    )
    .await;
    let (buyer_id, buyer) = app.account("buyer").await;
    let (app, buyer) = (&app, &buyer);
    let put = |sku: &'static str| async move {
        let path = format!("/v1/me/cart/items/{sku}");
        app.put(&path, Some(buyer), json!({"quantity": 1})).await
    };

    assert_problem(put("NOPE").await, StatusCode::NOT_FOUND).await;
    let delisted = assert_problem(put("MUG").await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(delisted["detail"].as_str().unwrap().contains("not listed"));
    let parent = assert_problem(put("TEE").await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(
        parent["detail"].as_str().unwrap().contains("variants"),
        "{parent}"
    );
    assert!(app.stream("cart", &buyer_id.to_string()).await.is_empty());

    // A variant sells; so does the parent SKU once it has stock of its own.
    assert_eq!(put("TEE-M").await.status(), StatusCode::OK);
    app.post(
        "/v1/inventory/TEE/restock",
        Some(&seller),
        json!({"quantity": 2}),
    )
    .await;
    assert_eq!(put("TEE").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_etag_of_a_get_is_accepted_by_if_match_and_a_stale_one_is_412() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    let product_id = app.product(&seller, "MUG", 1250, 10).await;
    let (_, buyer) = app.account("buyer").await;
    app.add_to_cart(&buyer, "MUG", 1).await;

    // The cart.
    let at = app.last_position().await;
    let read = app.read("/v1/me/cart", Some(&buyer), at).await;
    let cart_tag = etag(&read);
    assert!(cart_tag.starts_with("\"1."), "{cart_tag}");
    let set = |tag: &str, quantity: u32| {
        app.client
            .put(format!("{}/v1/me/cart/items/MUG", app.address))
            .bearer_auth(&buyer)
            .header("if-match", tag.to_owned())
            .json(&json!({"quantity": quantity}))
            .send()
    };
    let response = set(&cart_tag, 2).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(etag(&response), "\"2\"");
    let count = app.event_count().await;
    let stale = set(&cart_tag, 3).await.unwrap();
    assert_eq!(etag(&stale), "\"2\"");
    assert_problem(stale, StatusCode::PRECONDITION_FAILED).await;
    assert_eq!(app.event_count().await, count);
    // A GET's ETag still answers If-None-Match.
    let at = app.last_position().await;
    let fresh = etag(&app.read("/v1/me/cart", Some(&buyer), at).await);
    let not_modified = app
        .client
        .get(format!("{}/v1/me/cart", app.address))
        .bearer_auth(&buyer)
        .header("if-none-match", fresh.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(set(&fresh, 3).await.unwrap().status(), StatusCode::OK);

    // A product.
    let path = format!("/v1/products/{product_id}");
    let product_tag = etag(&app.read(&path, None, at).await);
    let patch = |tag: &str, amount: i64| {
        app.client
            .patch(format!("{}{path}", app.address))
            .bearer_auth(&seller)
            .header("if-match", tag.to_owned())
            .json(&json!({"price": {"amount": amount, "currency": "EUR"}}))
            .send()
    };
    assert_eq!(
        patch(&product_tag, 1100).await.unwrap().status(),
        StatusCode::OK
    );
    assert_problem(
        patch(&product_tag, 1000).await.unwrap(),
        StatusCode::PRECONDITION_FAILED,
    )
    .await;

    // A SKU's stock.
    let stock_tag = etag(&app.read("/v1/inventory/MUG", None, at).await);
    let restock = |tag: &str| {
        app.client
            .post(format!("{}/v1/inventory/MUG/restock", app.address))
            .bearer_auth(&seller)
            .header("if-match", tag.to_owned())
            .json(&json!({"quantity": 1}))
            .send()
    };
    assert_eq!(restock(&stock_tag).await.unwrap().status(), StatusCode::OK);
    assert_problem(
        restock(&stock_tag).await.unwrap(),
        StatusCode::PRECONDITION_FAILED,
    )
    .await;
}

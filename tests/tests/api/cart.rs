use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, checkout_body, spawn_app};

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

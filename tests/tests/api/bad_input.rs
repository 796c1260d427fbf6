//! Bad input is answered with the right status and problem+json, and appends no event.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use commerce_domain::{AccountId, Role};
use commerce_http::JwtKeys;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{assert_problem, checkout_body, spawn_app, TestApp, DEV_SECRET};

/// Sends a raw body and asserts the problem status and that the store did not change.
async fn refused(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: &str,
    status: StatusCode,
) {
    let before = app.event_count().await;
    let mut request = app
        .client
        .request(method, format!("{}{path}", app.address))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    assert_problem(request.send().await.unwrap(), status).await;
    assert_eq!(app.event_count().await, before, "{path} appended an event");
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    refused(
        &app,
        Method::POST,
        "/v1/products",
        Some(&seller),
        "{\"sku\": ",
        StatusCode::BAD_REQUEST,
    )
    .await;
    refused(
        &app,
        Method::POST,
        "/v1/accounts",
        None,
        "not json",
        StatusCode::BAD_REQUEST,
    )
    .await;
}

#[tokio::test]
async fn wrong_types_are_422() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 100, 0).await;
    let (_, buyer) = app.account("buyer").await;
    refused(
        &app,
        Method::PUT,
        "/v1/me/cart/items/MUG",
        Some(&buyer),
        r#"{"quantity": "two"}"#,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    refused(
        &app,
        Method::POST,
        "/v1/inventory/MUG/restock",
        Some(&seller),
        r#"{"quantity": 1.5}"#,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let product = r#"{"sku": "X", "name": "X", "price": 10, "category": "c"}"#;
    refused(
        &app,
        Method::POST,
        "/v1/products",
        Some(&seller),
        product,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let product = r#"{"sku": "X", "name": "X", "price": {"amount": 10.5, "currency": "EUR"}, "category": "c"}"#;
    refused(
        &app,
        Method::POST,
        "/v1/products",
        Some(&seller),
        product,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
}

#[tokio::test]
async fn negative_quantities_and_a_zero_restock_are_422() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 100, 5).await;
    let (_, buyer) = app.account("buyer").await;
    refused(
        &app,
        Method::PUT,
        "/v1/me/cart/items/MUG",
        Some(&buyer),
        r#"{"quantity": -1}"#,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    refused(
        &app,
        Method::POST,
        "/v1/inventory/MUG/restock",
        Some(&seller),
        r#"{"quantity": 0}"#,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    refused(
        &app,
        Method::POST,
        "/v1/inventory/MUG/restock",
        Some(&seller),
        r#"{"quantity": -3}"#,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    refused(
        &app,
        Method::POST,
        "/v1/inventory/MUG/adjust",
        Some(&seller),
        r#"{"delta": 0, "reason": "x"}"#,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    refused(
        &app,
        Method::PUT,
        "/v1/me/cart/items/MUG",
        Some(&buyer),
        r#"{"quantity": 1001}"#,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
}

#[tokio::test]
async fn unknown_skus_and_products_are_404() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    let (_, buyer) = app.account("buyer").await;
    refused(
        &app,
        Method::PUT,
        "/v1/me/cart/items/NOPE",
        Some(&buyer),
        r#"{"quantity": 1}"#,
        StatusCode::NOT_FOUND,
    )
    .await;
    refused(
        &app,
        Method::POST,
        "/v1/inventory/NOPE/restock",
        Some(&seller),
        r#"{"quantity": 1}"#,
        StatusCode::NOT_FOUND,
    )
    .await;
    let path = format!("/v1/products/{}", uuid::Uuid::now_v7());
    refused(
        &app,
        Method::PATCH,
        &path,
        Some(&seller),
        r#"{"name": "x"}"#,
        StatusCode::NOT_FOUND,
    )
    .await;
    refused(
        &app,
        Method::PATCH,
        "/v1/products/not-a-uuid",
        Some(&seller),
        r#"{"name": "x"}"#,
        StatusCode::BAD_REQUEST,
    )
    .await;
    refused(
        &app,
        Method::PUT,
        "/v1/me/cart/items/bad%20sku",
        Some(&buyer),
        r#"{"quantity": 1}"#,
        StatusCode::BAD_REQUEST,
    )
    .await;
}

#[tokio::test]
async fn an_oversize_body_is_413() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    let description = "x".repeat(1024 * 1024 + 10);
    let body = json!({"sku": "BIG", "name": "Big", "description": description, "price": {"amount": 1, "currency": "EUR"}, "category": "c"});
    refused(
        &app,
        Method::POST,
        "/v1/products",
        Some(&seller),
        &body.to_string(),
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    let before = app.event_count().await;
    let response = app
        .client
        .post(format!("{}/v1/products/import", app.address))
        .bearer_auth(&seller)
        .body(format!("{body}\n"))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn missing_invalid_tampered_and_expired_tokens_are_401() {
    let app = spawn_app().await;
    let (seller_id, seller) = app.account("seller").await;
    let body =
        r#"{"sku": "T", "name": "T", "price": {"amount": 1, "currency": "EUR"}, "category": "c"}"#;
    refused(
        &app,
        Method::POST,
        "/v1/products",
        None,
        body,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    refused(
        &app,
        Method::POST,
        "/v1/products",
        Some("not-a-jwt"),
        body,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // Claim to be an admin by editing the payload: the signature no longer matches.
    let parts: Vec<&str> = seller.split('.').collect();
    let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap())
        .unwrap()
        .replace("\"seller\"", "\"admin\"");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(payload.as_bytes()),
        parts[2]
    );
    refused(
        &app,
        Method::POST,
        "/v1/products",
        Some(&tampered),
        body,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // Signed with another secret.
    let forged = JwtKeys::new(b"some-other-secret-that-is-long-enough!!", 3600)
        .issue(AccountId(seller_id), Role::Seller)
        .unwrap();
    refused(
        &app,
        Method::POST,
        "/v1/products",
        Some(&forged),
        body,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // Issued two hours ago with a one-hour lifetime.
    let expired = JwtKeys::new(DEV_SECRET, 3600)
        .issue_at(
            AccountId(seller_id),
            Role::Seller,
            chrono::Utc::now().timestamp() - 7200,
        )
        .unwrap();
    refused(
        &app,
        Method::POST,
        "/v1/products",
        Some(&expired),
        body,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn the_wrong_role_is_403() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 100, 5).await;
    let (_, buyer) = app.account("buyer").await;
    let product =
        r#"{"sku": "T", "name": "T", "price": {"amount": 1, "currency": "EUR"}, "category": "c"}"#;
    refused(
        &app,
        Method::POST,
        "/v1/products",
        Some(&buyer),
        product,
        StatusCode::FORBIDDEN,
    )
    .await;
    refused(
        &app,
        Method::PUT,
        "/v1/me/cart/items/MUG",
        Some(&seller),
        r#"{"quantity": 1}"#,
        StatusCode::FORBIDDEN,
    )
    .await;
    refused(
        &app,
        Method::POST,
        "/v1/inventory/MUG/restock",
        Some(&buyer),
        r#"{"quantity": 1}"#,
        StatusCode::FORBIDDEN,
    )
    .await;
    refused(
        &app,
        Method::POST,
        "/v1/me/cart/checkout",
        Some(&seller),
        &checkout_body().to_string(),
        StatusCode::FORBIDDEN,
    )
    .await;
}

#[tokio::test]
async fn another_sellers_sku_is_403() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 100, 5).await;
    let (_, other) = app.account("seller").await;
    refused(
        &app,
        Method::POST,
        "/v1/inventory/MUG/restock",
        Some(&other),
        r#"{"quantity": 1}"#,
        StatusCode::FORBIDDEN,
    )
    .await;
    refused(
        &app,
        Method::POST,
        "/v1/inventory/MUG/adjust",
        Some(&other),
        r#"{"delta": -1, "reason": "x"}"#,
        StatusCode::FORBIDDEN,
    )
    .await;
}

#[tokio::test]
async fn another_buyers_order_is_404() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 100, 5).await;
    let (_, buyer) = app.account("buyer").await;
    app.add_to_cart(&buyer, "MUG", 1).await;
    let order_id = app.checkout(&buyer).await;
    // The saga appends in the background: let it finish so only this request could append.
    app.wait_for_saga(order_id).await;
    let (_, other) = app.account("buyer").await;
    refused(
        &app,
        Method::POST,
        &format!("/v1/orders/{order_id}/cancel"),
        Some(&other),
        "{}",
        StatusCode::NOT_FOUND,
    )
    .await;
    refused(
        &app,
        Method::POST,
        &format!("/v1/orders/{order_id}/returns"),
        Some(&other),
        "{}",
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn an_empty_cart_checkout_is_422() {
    let app = spawn_app().await;
    let (_, buyer) = app.account("buyer").await;
    refused(
        &app,
        Method::POST,
        "/v1/me/cart/checkout",
        Some(&buyer),
        &checkout_body().to_string(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
}

#[tokio::test]
async fn an_invalid_shipping_address_is_422() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 100, 5).await;
    let (_, buyer) = app.account("buyer").await;
    app.add_to_cart(&buyer, "MUG", 1).await;
    let mut body = checkout_body();
    body["shipping_address"]["country"] = json!("Neverland");
    refused(
        &app,
        Method::POST,
        "/v1/me/cart/checkout",
        Some(&buyer),
        &body.to_string(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
}

#[tokio::test]
async fn a_duplicate_email_is_409() {
    let app = spawn_app().await;
    let account = json!({"email": "twin@example.com", "password": "password-one", "name": "One", "role": "buyer"});
    assert_eq!(
        app.post("/v1/accounts", None, account).await.status(),
        StatusCode::CREATED
    );
    let again = r#"{"email": "TWIN@example.com", "password": "password-two", "name": "Two", "role": "seller"}"#;
    refused(
        &app,
        Method::POST,
        "/v1/accounts",
        None,
        again,
        StatusCode::CONFLICT,
    )
    .await;
}

#[tokio::test]
async fn invalid_registrations_are_422() {
    let app = spawn_app().await;
    let short = r#"{"email": "a@example.com", "password": "short", "name": "A", "role": "buyer"}"#;
    refused(
        &app,
        Method::POST,
        "/v1/accounts",
        None,
        short,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let email =
        r#"{"email": "not-an-email", "password": "long enough", "name": "A", "role": "buyer"}"#;
    refused(
        &app,
        Method::POST,
        "/v1/accounts",
        None,
        email,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let role =
        r#"{"email": "a@example.com", "password": "long enough", "name": "A", "role": "wizard"}"#;
    refused(
        &app,
        Method::POST,
        "/v1/accounts",
        None,
        role,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
}

//! Bad input is answered with the right status and problem+json, and appends no event.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use commerce_domain::{AccountId, Role};
use commerce_http::JwtKeys;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, checkout_body, spawn_app, TestApp};
use crate::orders::confirm;

/// Sends a raw body, asserts the problem status and that the store did not change; the problem.
async fn refused(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: &str,
    status: StatusCode,
) -> Value {
    let before = app.event_count().await;
    let mut request = app
        .client
        .request(method, format!("{}{path}", app.address))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let problem = assert_problem(request.send().await.unwrap(), status).await;
    assert_eq!(app.event_count().await, before, "{path} appended an event");
    problem
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
        .issue(AccountId(seller_id), Role::Seller, 1)
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
    let expired = app
        .jwt()
        .issue_at(
            AccountId(seller_id),
            Role::Seller,
            1,
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

/// `body` with the text at the JSON pointer `at` replaced by `text`.
fn with(mut body: Value, at: &str, text: &str) -> Value {
    *body.pointer_mut(at).unwrap() = json!(text);
    body
}

#[tokio::test]
async fn a_nul_character_anywhere_in_a_body_is_422_and_appends_nothing() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    let product_id = app.product(&seller, "MUG", 100, 10).await;
    let (_, buyer) = app.account("buyer").await;
    // One order delivered (to review and return), one confirmed (to cancel and ship), one cart.
    app.add_to_cart(&buyer, "MUG", 1).await;
    let delivered = app.checkout(&buyer).await;
    confirm(&app, delivered).await;
    let shipment = json!({"carrier": "DHL", "tracking_number": "1"});
    let path = format!("/v1/orders/{delivered}/shipments");
    let response = app.post(&path, Some(&seller), shipment.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let path = format!("/v1/orders/{delivered}/delivery");
    let response = app.request(Method::POST, &path, Some(&seller), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    app.add_to_cart(&buyer, "MUG", 1).await;
    let confirmed = app.checkout(&buyer).await;
    confirm(&app, confirmed).await;
    app.add_to_cart(&buyer, "MUG", 1).await;

    let nul = "bad\u{0}text";
    let product = json!({"sku": "NEW", "name": "New", "description": "fine",
        "price": {"amount": 100, "currency": "EUR"}, "category": "test/things",
        "attributes": {"colour": "red"}});
    let mut nul_key = product.clone();
    nul_key["attributes"][nul] = json!("red");
    let review = json!({"rating": 5, "title": "Good", "body": "Sturdy."});
    let account = json!({"email": "nul@example.com", "password": "long enough", "name": "N", "role": "buyer"});
    let create = "POST /v1/products";
    let change = format!("PATCH /v1/products/{product_id}");
    let ship = format!("POST /v1/orders/{confirmed}/shipments");
    let review_it = format!("POST /v1/products/{product_id}/reviews");
    let checkout = "POST /v1/me/cart/checkout";
    // (caller, "METHOD path", body, the field the problem names); one case a line reads best.
    #[rustfmt::skip]
    let cases: Vec<(Option<&str>, String, Value, &str)> = vec![
        (Some(&seller), create.into(), with(product.clone(), "/description", nul), "description"),
        (Some(&seller), create.into(), with(product.clone(), "/attributes/colour", nul), "attributes.colour"),
        (Some(&seller), create.into(), nul_key, "attributes"),
        (Some(&seller), change, json!({"description": nul}), "description"),
        (Some(&seller), "POST /v1/inventory/MUG/adjust".into(), json!({"delta": -1, "reason": nul}), "reason"),
        (Some(&seller), ship.clone(), with(shipment.clone(), "/carrier", nul), "carrier"),
        (Some(&seller), ship, with(shipment, "/tracking_number", nul), "tracking_number"),
        (Some(&buyer), format!("POST /v1/orders/{confirmed}/cancel"), json!({"reason": nul}), "reason"),
        (Some(&buyer), format!("POST /v1/orders/{delivered}/returns"), json!({"reason": nul}), "reason"),
        (Some(&buyer), review_it.clone(), with(review.clone(), "/title", nul), "title"),
        (Some(&buyer), review_it, with(review, "/body", nul), "body"),
        (Some(&buyer), checkout.into(), with(checkout_body(), "/payment_token", nul), "payment_token"),
        (Some(&buyer), checkout.into(), with(checkout_body(), "/shipping_address/line1", nul), "shipping_address.line1"),
        (None, "POST /v1/accounts".into(), with(account, "/name", nul), "name"),
        (None, "POST /v1/auth/token".into(), json!({"email": nul, "password": "long enough"}), "email"),
    ];
    for (caller, route, body, field) in cases {
        let (method, path) = route.split_once(' ').unwrap();
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let body = body.to_string();
        let status = StatusCode::UNPROCESSABLE_ENTITY;
        let problem = refused(&app, method, path, caller, &body, status).await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains(field),
            "{route}: `{detail}` names no `{field}`"
        );
    }

    // An import line with a NUL fails on its own; the report says so and nothing is appended.
    let before = app.event_count().await;
    let line = with(product.clone(), "/description", nul);
    let response = app
        .client
        .post(format!("{}/v1/products/import", app.address))
        .bearer_auth(&seller)
        .body(format!("{line}\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["failed"], 1, "{report}");
    assert_eq!(report["results"][0]["status"], 422, "{report}");
    assert_eq!(app.event_count().await, before);

    // The six characters `\u0000` as text (an escaped backslash) are no NUL, and are kept.
    let literal = with(product, "/description", "a \\u0000 b");
    let response = app.post("/v1/products", Some(&seller), literal).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["description"], "a \\u0000 b");
}

/// A cursor as the API encodes them: base64url (no padding) of JSON.
fn cursor(position: Value) -> String {
    URL_SAFE_NO_PAD.encode(position.to_string())
}

#[tokio::test]
async fn a_nul_in_a_query_and_a_crafted_cursor_are_400() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    let product_id = app.product(&seller, "MUG", 100, 10).await;
    let (_, buyer) = app.account("buyer").await;
    let id = uuid::Uuid::now_v7();
    // A year chrono parses but Postgres cannot hold (its timestamps start in 4713 BC).
    let ancient = "-100000-01-01T00:00:00Z";
    let products = "/v1/products";
    let reviews = format!("/v1/products/{product_id}/reviews");
    let (seller, buyer) = (Some(seller.as_str()), Some(buyer.as_str()));
    // (path, caller); one case a line reads best.
    #[rustfmt::skip]
    let cases: Vec<(String, Option<&str>)> = vec![
        (format!("{products}?q=mug%00"), None),
        (format!("{products}?attr.colour=red%00"), None),
        (format!("{products}?attr.col%00our=red"), None),
        (format!("{products}?category=test%00"), None),
        ("/v1/recommendations?category=test%00".into(), None),
        ("/v1/seller/orders?status=confirmed%00".into(), seller),
        ("/v1/inventory/MUG%00".into(), None),
        // Longer than any parameter the API takes or issues.
        (format!("{products}?attr.colour={}", "x".repeat(3000)), None),
        // Crafted cursors: an impossible year, a NUL in a keyset name, offsets out of range.
        (format!("{products}?sort=newest&cursor={}", cursor(json!({"key": ancient, "id": id}))), None),
        (format!("{products}?sort=name&cursor={}", cursor(json!({"key": "Mug\u{0}", "id": id}))), None),
        (format!("{products}?q=mug&cursor={}", cursor(json!({"offset": -1}))), None),
        (format!("{products}?q=mug&cursor={}", cursor(json!({"offset": i64::MAX}))), None),
        (format!("{reviews}?cursor={}", cursor(json!([ancient, id]))), None),
        (format!("/v1/me/orders?cursor={}", cursor(json!([ancient, id]))), buyer),
        (format!("/v1/seller/orders?cursor={}", cursor(json!([ancient, id]))), seller),
        (format!("/v1/me/orders?cursor={}", cursor(json!(["2026-01-01T00:00:00Z\u{0}", id]))), buyer),
        // Garbage: not base64, base64 of no JSON, JSON of no position.
        (format!("{products}?cursor=%21%21not-base64"), None),
        (format!("/v1/me/orders?cursor={}", URL_SAFE_NO_PAD.encode("hello")), buyer),
        (format!("/v1/me/notifications?cursor={}", cursor(json!("ten"))), buyer),
    ];
    for (path, caller) in cases {
        let response = app.request(Method::GET, &path, caller, None).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        assert_problem(response, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn an_event_too_large_for_the_bus_is_413_naming_the_limit_and_appends_nothing() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    // Every field within its own limit, and the body within 1 MiB: 100 variants of 30
    // attributes of 200 characters make a product event of some 650 KB.
    let attributes: serde_json::Map<String, Value> = (0..30)
        .map(|i| (format!("attribute_{i}"), json!("v".repeat(200))))
        .collect();
    let variants: Vec<Value> = (0..100)
        .map(|i| json!({"sku": format!("HUGE-{i}"), "attributes": attributes}))
        .collect();
    let body = json!({"sku": "HUGE", "name": "Huge", "description": "d",
        "price": {"amount": 1, "currency": "EUR"}, "category": "c", "variants": variants});
    assert!(body.to_string().len() < 1024 * 1024);
    let before = app.event_count().await;
    let response = app.post("/v1/products", Some(&seller), body).await;
    let problem = assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("524288"),
        "{problem}"
    );
    assert_eq!(app.event_count().await, before);
}

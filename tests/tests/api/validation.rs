//! The rules the domain checks (not only the body's shape) are answered with `errors[]`: a JSON
//! pointer and a sentence for each bad field or parameter, every one of them at once, and the
//! refused request changes nothing.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, checkout_body, spawn_app, TestApp};
use crate::orders::confirm;

/// Sends `body` (raw JSON) or nothing, asserts a problem with `status` whose `errors[]` point
/// at exactly `pointers` (in any order), in a person's words, and that no event was appended.
async fn refused(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    status: StatusCode,
    pointers: &[&str],
) -> Value {
    let before = app.event_count().await;
    let mut request = app
        .client
        .request(method.clone(), format!("{}{path}", app.address));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let problem = assert_problem(request.send().await.unwrap(), status).await;
    let errors = problem["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{method} {path}: no errors[] in {problem}"));
    let mut found: Vec<&str> = errors
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    found.sort_unstable();
    let mut expected = pointers.to_vec();
    expected.sort_unstable();
    assert_eq!(found, expected, "{method} {path}: {problem}");
    let location = if status == StatusCode::BAD_REQUEST {
        "query"
    } else {
        "body"
    };
    for error in errors {
        assert_eq!(error["in"], location, "{method} {path}: {problem}");
    }
    let texts = std::iter::once(&problem["detail"]).chain(errors.iter().map(|e| &e["detail"]));
    for text in texts {
        let text = text.as_str().unwrap();
        assert!(!text.is_empty(), "{method} {path}: {problem}");
        for serde_words in ["invalid type", "invalid value", "expected", "line 1 column"] {
            assert!(
                !text.contains(serde_words),
                "{method} {path}: `{text}` says `{serde_words}`"
            );
        }
    }
    assert_eq!(
        app.event_count().await,
        before,
        "{method} {path} appended an event"
    );
    problem
}

/// The body of a GET once `until` holds of it (the read models catch up in the background).
async fn read(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    until: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let response = app.request(Method::GET, path, token, None).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status == StatusCode::OK && until(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "GET {path}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The status of a GET.
async fn status_of(app: &TestApp, path: &str, token: Option<&str>) -> StatusCode {
    app.request(Method::GET, path, token, None).await.status()
}

#[tokio::test]
async fn a_product_breaking_several_rules_is_refused_naming_each_field() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    let product_id = app.product(&seller, "MUG", 100, 0).await;
    let created = read(&app, "/v1/seller/products", Some(&seller), |b| {
        b["items"].as_array().is_some_and(|i| i.len() == 1)
    })
    .await;

    let body = json!({"sku": "TEE", "name": "  ", "category": "apparel//shirts",
        "price": {"amount": -1, "currency": "EUR"},
        "attributes": {"bad key": "x", "colour": ["red"]},
        "variants": [{"sku": "TEE", "price": {"amount": 100, "currency": "USD"}}]});
    refused(
        &app,
        Method::POST,
        "/v1/products",
        Some(&seller),
        Some(&body.to_string()),
        StatusCode::UNPROCESSABLE_ENTITY,
        &[
            "/name",
            "/category",
            "/price/amount",
            "/attributes/bad key",
            "/attributes/colour",
            "/variants/0/sku",
        ],
    )
    .await;
    assert_eq!(
        status_of(&app, "/v1/products/by-sku/TEE", None).await,
        StatusCode::NOT_FOUND
    );

    // A change: the same rules, every field at once.
    let patch =
        json!({"name": "", "description": "d".repeat(10_001), "attributes": {"size": {"eu": 42}}});
    refused(
        &app,
        Method::PATCH,
        &format!("/v1/products/{product_id}"),
        Some(&seller),
        Some(&patch.to_string()),
        StatusCode::UNPROCESSABLE_ENTITY,
        &["/name", "/description", "/attributes/size"],
    )
    .await;
    let patch = json!({"category": "/", "price": {"amount": -3, "currency": "EUR"}});
    refused(
        &app,
        Method::PATCH,
        &format!("/v1/products/{product_id}"),
        Some(&seller),
        Some(&patch.to_string()),
        StatusCode::UNPROCESSABLE_ENTITY,
        &["/category", "/price/amount"],
    )
    .await;
    let after = read(&app, "/v1/seller/products", Some(&seller), |_| true).await;
    assert_eq!(after, created);

    // An import line is checked alike, its errors[] in its result.
    let response = app
        .client
        .post(format!("{}/v1/products/import", app.address))
        .bearer_auth(&seller)
        .body(format!("{body}\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["results"][0]["status"], 422, "{report}");
    assert_eq!(
        report["results"][0]["errors"].as_array().map(Vec::len),
        Some(6),
        "{report}"
    );
}

#[tokio::test]
async fn a_review_with_a_bad_rating_and_title_names_both() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    let product_id = app.product(&seller, "MUG", 100, 5).await;
    let (_, buyer) = app.account("buyer").await;
    // Only a buyer whose order of it was delivered may review a product: the rules come next.
    app.add_to_cart(&buyer, "MUG", 1).await;
    let order_id = app.checkout(&buyer).await;
    confirm(&app, order_id).await;
    let response = app
        .post(
            &format!("/v1/orders/{order_id}/shipments"),
            Some(&seller),
            json!({"carrier": "DHL", "tracking_number": "JD0142"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .request(
            Method::POST,
            &format!("/v1/orders/{order_id}/delivery"),
            Some(&seller),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json!({"rating": 9, "title": "   ", "body": "b".repeat(5001)});
    refused(
        &app,
        Method::POST,
        &format!("/v1/products/{product_id}/reviews"),
        Some(&buyer),
        Some(&body.to_string()),
        StatusCode::UNPROCESSABLE_ENTITY,
        &["/rating", "/title", "/body"],
    )
    .await;
    let reviews = read(
        &app,
        &format!("/v1/products/{product_id}/reviews"),
        None,
        |_| true,
    )
    .await;
    assert_eq!(reviews["items"], json!([]), "{reviews}");
}

#[tokio::test]
async fn a_registration_with_several_bad_fields_names_each() {
    let app = spawn_app().await;
    let body = json!({"email": "ada@example", "password": "short", "name": " ", "role": "buyer"});
    refused(
        &app,
        Method::POST,
        "/v1/accounts",
        None,
        Some(&body.to_string()),
        StatusCode::UNPROCESSABLE_ENTITY,
        &["/email", "/password", "/name"],
    )
    .await;
    // A good e-mail with a bad name: the account is not made, so the e-mail stays free.
    let body = json!({"email": "ada@example.com", "password": "long enough", "name": "A\u{7}da", "role": "seller"});
    refused(
        &app,
        Method::POST,
        "/v1/accounts",
        None,
        Some(&body.to_string()),
        StatusCode::UNPROCESSABLE_ENTITY,
        &["/name"],
    )
    .await;
    let response = app
        .post(
            "/v1/auth/token",
            None,
            json!({"email": "ada@example.com", "password": "long enough"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_cart_line_with_an_unknown_field_and_too_many_units_names_both() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 100, 5).await;
    let (_, buyer) = app.account("buyer").await;
    app.add_to_cart(&buyer, "MUG", 2).await;
    let cart = read(&app, "/v1/me/cart", Some(&buyer), |c| {
        c["items"][0]["quantity"] == 2
    })
    .await;
    refused(
        &app,
        Method::PUT,
        "/v1/me/cart/items/MUG",
        Some(&buyer),
        Some(r#"{"gift": true, "quantity": 1001}"#),
        StatusCode::UNPROCESSABLE_ENTITY,
        &["/gift", "/quantity"],
    )
    .await;
    let after = read(&app, "/v1/me/cart", Some(&buyer), |_| true).await;
    let lines = |cart: &Value| -> Vec<(Value, Value)> {
        let items = cart["items"].as_array().cloned().unwrap_or_default();
        items
            .iter()
            .map(|i| (i["sku"].clone(), i["quantity"].clone()))
            .collect()
    };
    assert_eq!(lines(&after), lines(&cart));
}

#[tokio::test]
async fn a_restock_and_an_adjustment_breaking_rules_name_each_field() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 100, 5).await;
    let stock = read(&app, "/v1/inventory/MUG", None, |s| s["on_hand"] == 5).await;
    refused(
        &app,
        Method::POST,
        "/v1/inventory/MUG/restock",
        Some(&seller),
        Some(r#"{"quantity": 0, "note": "late delivery"}"#),
        StatusCode::UNPROCESSABLE_ENTITY,
        &["/note", "/quantity"],
    )
    .await;
    refused(
        &app,
        Method::POST,
        "/v1/inventory/MUG/restock",
        Some(&seller),
        Some(r#"{"quantity": -4}"#),
        StatusCode::UNPROCESSABLE_ENTITY,
        &["/quantity"],
    )
    .await;
    refused(
        &app,
        Method::POST,
        "/v1/inventory/MUG/adjust",
        Some(&seller),
        Some(r#"{"delta": 0, "reason": "  "}"#),
        StatusCode::UNPROCESSABLE_ENTITY,
        &["/delta", "/reason"],
    )
    .await;
    // A rule only the stock's levels can tell (too much on hand) points at the field too.
    refused(
        &app,
        Method::POST,
        "/v1/inventory/MUG/restock",
        Some(&seller),
        Some(r#"{"quantity": 999999999}"#),
        StatusCode::UNPROCESSABLE_ENTITY,
        &["/quantity"],
    )
    .await;
    let after = read(&app, "/v1/inventory/MUG", None, |_| true).await;
    assert_eq!(after["on_hand"], stock["on_hand"]);
    assert_eq!(after["available"], stock["available"]);
}

#[tokio::test]
async fn a_checkout_with_a_bad_address_points_at_each_bad_part() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 100, 5).await;
    let (_, buyer) = app.account("buyer").await;
    app.add_to_cart(&buyer, "MUG", 1).await;
    let mut body = checkout_body();
    body["payment_token"] = json!("");
    body["shipping_address"]["postal_code"] = json!("   ");
    body["shipping_address"]["country"] = json!("Neverland");
    body["shipping_address"]["line2"] = json!("x".repeat(201));
    refused(
        &app,
        Method::POST,
        "/v1/me/cart/checkout",
        Some(&buyer),
        Some(&body.to_string()),
        StatusCode::UNPROCESSABLE_ENTITY,
        &[
            "/payment_token",
            "/shipping_address/country",
            "/shipping_address/line2",
            "/shipping_address/postal_code",
        ],
    )
    .await;
    let cart = read(&app, "/v1/me/cart", Some(&buyer), |c| {
        c["items"].as_array().is_some_and(|i| i.len() == 1)
    })
    .await;
    assert_eq!(cart["items"][0]["sku"], "MUG");
    let orders = read(&app, "/v1/me/orders", Some(&buyer), |_| true).await;
    assert_eq!(orders["items"], json!([]));
}

#[tokio::test]
async fn a_search_names_every_bad_parameter() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 100, 5).await;
    let listed = read(&app, "/v1/products", None, |p| {
        p["items"].as_array().is_some_and(|i| i.len() == 1)
    })
    .await;
    let q = "q".repeat(201);
    let path = format!(
        "/v1/products?q={q}&min_price=cheap&max_price=1.5&sort=random&limit=0&cursor=%21%21&attr.bad%20name=x"
    );
    refused(
        &app,
        Method::GET,
        &path,
        None,
        None,
        StatusCode::BAD_REQUEST,
        &[
            "/q",
            "/min_price",
            "/max_price",
            "/sort",
            "/limit",
            "/cursor",
            "/attr.bad name",
        ],
    )
    .await;
    // Relevance needs a text to be relevant to; a limit that is no number.
    refused(
        &app,
        Method::GET,
        "/v1/products?sort=relevance&limit=ten",
        None,
        None,
        StatusCode::BAD_REQUEST,
        &["/sort", "/limit"],
    )
    .await;
    // The other listings: limit, cursor and status together.
    let (_, buyer) = app.account("buyer").await;
    refused(
        &app,
        Method::GET,
        "/v1/me/orders?limit=abc&cursor=garbage",
        Some(&buyer),
        None,
        StatusCode::BAD_REQUEST,
        &["/limit", "/cursor"],
    )
    .await;
    refused(
        &app,
        Method::GET,
        "/v1/seller/orders?status=lost&limit=0",
        Some(&seller),
        None,
        StatusCode::BAD_REQUEST,
        &["/status", "/limit"],
    )
    .await;
    let after = read(&app, "/v1/products", None, |_| true).await;
    assert_eq!(after, listed);
}

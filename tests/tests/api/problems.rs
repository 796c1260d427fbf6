//! Problems a person can act on: every invalid field at once with a JSON pointer, in the API's
//! words (never serde's), one wording for a route of another role, and `type` URIs that lead
//! to a page.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, checkout_body, spawn_app, TestApp};

/// The `(pointer, detail)` of each entry of a problem's `errors[]`, sorted by pointer.
fn errors(problem: &Value) -> Vec<(String, String)> {
    let mut errors: Vec<(String, String)> = problem["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors[] in {problem}"))
        .iter()
        .map(|e| {
            let pointer = e["pointer"].as_str().unwrap().to_owned();
            (pointer, e["detail"].as_str().unwrap().to_owned())
        })
        .collect();
    errors.sort();
    errors
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> reqwest::Response {
    let mut request = app
        .client
        .request(method, format!("{}{path}", app.address))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn several_bad_fields_in_one_body_are_all_reported_with_their_pointers() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    let body = json!({"sku": "bad sku", "name": 7, "category": "mugs",
        "price": {"amount": "19.99", "currency": "EUR"},
        "variants": [{"sku": "MUG-1"}, {"sku": "MUG-2", "price": {"amount": 10.5, "currency": "EUR"}}]});
    let before = app.event_count().await;
    let response = send(
        &app,
        Method::POST,
        "/v1/products",
        Some(&seller),
        &body.to_string(),
    )
    .await;
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(app.event_count().await, before);
    let found = errors(&problem);
    let pointers: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        pointers,
        ["/name", "/price/amount", "/sku", "/variants/1/price/amount"],
        "{problem}"
    );
    let detail = |pointer: &str| &found.iter().find(|(p, _)| p == pointer).unwrap().1;
    assert!(
        detail("/price/amount")
            .starts_with("price.amount must be an integer number of minor units"),
        "{problem}"
    );
    assert!(
        detail("/name").starts_with("name must be a string"),
        "{problem}"
    );

    // A missing field points at where it belongs; a cart quantity below zero says so.
    let body = json!({"sku": "MUG", "name": "Mug", "category": "mugs", "price": {"amount": 100}});
    let response = send(
        &app,
        Method::POST,
        "/v1/products",
        Some(&seller),
        &body.to_string(),
    )
    .await;
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(
        errors(&problem),
        [(
            "/price/currency".to_owned(),
            "price.currency is required".to_owned()
        )]
    );
    app.product(&seller, "MUG", 100, 5).await;
    let (_, buyer) = app.account("buyer").await;
    let response = send(
        &app,
        Method::PUT,
        "/v1/me/cart/items/MUG",
        Some(&buyer),
        r#"{"quantity": -1}"#,
    )
    .await;
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(
        errors(&problem),
        [(
            "/quantity".to_owned(),
            "quantity must not be negative".to_owned()
        )]
    );

    // An unknown field before a wrong one: both.
    let body = r#"{"colour": "red", "quantity": "two"}"#;
    let response = send(
        &app,
        Method::PUT,
        "/v1/me/cart/items/MUG",
        Some(&buyer),
        body,
    )
    .await;
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let found = errors(&problem);
    assert_eq!(found[0].0, "/colour", "{problem}");
    assert!(
        found[0].1.starts_with("unknown field `colour`"),
        "{problem}"
    );
    assert_eq!(
        found[1],
        (
            "/quantity".to_owned(),
            "quantity must be a whole number (0 or more), not \"two\"".to_owned()
        )
    );

    // A registration with a bad e-mail, the admin role and a short password: three entries.
    let body = json!({"email": "nobody", "password": "short", "name": "N", "role": "admin"});
    let response = send(&app, Method::POST, "/v1/accounts", None, &body.to_string()).await;
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let pointers: Vec<String> = errors(&problem).into_iter().map(|(p, _)| p).collect();
    assert_eq!(pointers, ["/email", "/password", "/role"], "{problem}");
}

#[tokio::test]
async fn no_problem_speaks_serde() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    let product_id = app.product(&seller, "MUG", 100, 5).await;
    let (_, buyer) = app.account("buyer").await;
    let mut checkout = checkout_body();
    checkout["shipping_address"] = json!("home");
    let checkout = checkout.to_string();
    // (method, path, caller, body); one case a line reads best.
    #[rustfmt::skip]
    let cases: Vec<(Method, String, Option<&str>, &str)> = vec![
        (Method::POST, "/v1/products".into(), Some(&seller), r#"{"sku": "X", "name": "X", "price": 1999, "category": "c"}"#),
        (Method::POST, "/v1/products".into(), Some(&seller), r#"{"sku": 5, "name": null, "price": {"amount": 1.5, "currency": "eur"}, "category": []}"#),
        (Method::PATCH, format!("/v1/products/{product_id}"), Some(&seller), r#"{"price": {"amount": true, "currency": "EUR"}}"#),
        (Method::PUT, "/v1/me/cart/items/MUG".into(), Some(&buyer), r#"{"quantity": "two"}"#),
        (Method::PUT, "/v1/me/cart/items/MUG".into(), Some(&buyer), r#"{"quantity": 99999999999}"#),
        (Method::POST, "/v1/inventory/MUG/restock".into(), Some(&seller), r#"{"quantity": 1.5}"#),
        (Method::POST, "/v1/inventory/MUG/adjust".into(), Some(&seller), r#"{"delta": "x"}"#),
        (Method::POST, "/v1/me/cart/checkout".into(), Some(&buyer), &checkout),
        (Method::POST, "/v1/accounts".into(), None, r#"{"email": "a@example.com", "password": "long enough", "name": "A", "role": "wizard"}"#),
        (Method::POST, "/v1/auth/token".into(), None, r#"{"email": 1}"#),
        (Method::POST, "/v1/products".into(), Some(&seller), r#"{"sku": "#),
        (Method::POST, "/v1/products".into(), Some(&seller), "[1, 2"),
        (Method::GET, "/v1/products/not-a-uuid".into(), None, ""),
        (Method::GET, format!("/v1/products/{product_id}/reviews?limit=many"), None, ""),
        (Method::GET, "/v1/me/orders?limit=-".into(), Some(&buyer), ""),
    ];
    for (method, path, caller, body) in cases {
        let response = send(&app, method.clone(), &path, caller, body).await;
        assert!(
            response.status().is_client_error(),
            "{method} {path}: {}",
            response.status()
        );
        let problem: Value = response.json().await.unwrap();
        let mut texts = vec![problem["detail"].as_str().unwrap().to_owned()];
        for (_, detail) in problem["errors"]
            .as_array()
            .map(|_| errors(&problem))
            .unwrap_or_default()
        {
            texts.push(detail);
        }
        for text in texts {
            for serde_words in [
                "invalid type",
                "invalid value",
                "expected struct",
                "expected u32",
                "expected i64",
                "at line",
                "does not fit the schema",
            ] {
                assert!(
                    !text.contains(serde_words),
                    "{method} {path}: `{text}` says `{serde_words}`"
                );
            }
        }
    }
}

#[tokio::test]
async fn query_and_path_parameters_are_named_in_errors() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    let product_id = app.product(&seller, "MUG", 100, 5).await;
    let path = format!("/v1/products/{product_id}/reviews?limit=many");
    let response = app.request(Method::GET, &path, None, None).await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem["errors"][0]["in"], "query", "{problem}");
    assert_eq!(problem["errors"][0]["pointer"], "/limit", "{problem}");
    assert_eq!(
        problem["errors"][0]["detail"], "limit must be an integer",
        "{problem}"
    );

    let response = app
        .request(Method::GET, "/v1/products/not-a-uuid/reviews", None, None)
        .await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(problem["errors"][0]["in"], "path", "{problem}");
    assert_eq!(problem["errors"][0]["pointer"], "/id", "{problem}");
    assert_eq!(
        problem["errors"][0]["detail"], "id must be a UUID",
        "{problem}"
    );
}

#[tokio::test]
async fn a_route_of_another_role_says_so_in_one_wording() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 100, 5).await;
    let (_, buyer) = app.account("buyer").await;
    for (method, path, body) in [
        (Method::PUT, "/v1/me/cart/items/MUG", json!({"quantity": 1})),
        (Method::POST, "/v1/me/cart/checkout", checkout_body()),
        (Method::GET, "/v1/me/cart", Value::Null),
    ] {
        let body = (!body.is_null()).then_some(body);
        let response = app.request(method, path, Some(&seller), body).await;
        let problem = assert_problem(response, StatusCode::FORBIDDEN).await;
        assert_eq!(
            problem["detail"], "this route is for buyers; you are signed in as a seller",
            "{path}"
        );
    }
    let response = app
        .post(
            "/v1/inventory/MUG/restock",
            Some(&buyer),
            json!({"quantity": 1}),
        )
        .await;
    let problem = assert_problem(response, StatusCode::FORBIDDEN).await;
    assert_eq!(
        problem["detail"],
        "this route is for sellers and admins; you are signed in as a buyer"
    );
}

#[tokio::test]
async fn every_problem_type_is_absolute_and_leads_to_a_page() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    let (_, buyer) = app.account("buyer").await;
    let mut problems = Vec::new();
    // 400, 401, 403, 404, 415 and 422, from extractors, handlers, the fallback and the domain.
    for (method, path, token, body, content_type) in [
        (
            Method::POST,
            "/v1/products",
            Some(&seller),
            "{",
            "application/json",
        ),
        (Method::POST, "/v1/products", None, "{}", "application/json"),
        (
            Method::POST,
            "/v1/products",
            Some(&buyer),
            "{}",
            "application/json",
        ),
        (Method::GET, "/v1/nowhere", None, "", "application/json"),
        (
            Method::POST,
            "/v1/products",
            Some(&seller),
            "{}",
            "text/plain",
        ),
        (
            Method::POST,
            "/v1/products",
            Some(&seller),
            "{}",
            "application/json",
        ),
        (
            Method::GET,
            "/v1/products?limit=x",
            None,
            "",
            "application/json",
        ),
    ] {
        let mut request = app
            .client
            .request(method, format!("{}{path}", app.address))
            .header("content-type", content_type)
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert!(response.status().is_client_error(), "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        problems.push(response.json::<Value>().await.unwrap());
    }
    let mut pages = 0;
    for problem in &problems {
        let kind = problem["type"].as_str().unwrap();
        if kind == "about:blank" {
            assert_eq!(problem["status"], 404, "{problem}");
            continue;
        }
        assert!(
            kind.starts_with(&format!("{}/problems/", app.address)),
            "{problem}"
        );
        let page = app.client.get(kind).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK, "{kind}");
        assert!(page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let html = page.text().await.unwrap();
        assert!(html.contains("<h1>"), "{html}");
        pages += 1;
    }
    assert_eq!(pages, problems.len() - 1);
    let index = app
        .client
        .get(format!("{}/problems", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(index.status(), StatusCode::OK);
    let response = app
        .request(Method::GET, "/problems/no-such-kind", None, None)
        .await;
    assert_problem(response, StatusCode::NOT_FOUND).await;
}

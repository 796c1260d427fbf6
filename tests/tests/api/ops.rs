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
    let body = ready.json::<Value>().await.unwrap();
    assert_eq!(
        (&body["postgres"], &body["nats"]),
        (&json!("up"), &json!("up")),
        "{body}"
    );
    assert!(
        ["active", "standby", "starting"].contains(&body["relay"].as_str().unwrap_or_default()),
        "{body}"
    );
    assert!(body.get("down").is_none(), "nothing is down: {body}");
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
            // Within the body's bounds, but past what the SKU may hold: the aggregate refuses.
            json!({"quantity": 1_000_000_000}),
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
    // `/docs` redirects to the viewer (tests/contract checks it loads nothing from elsewhere).
    let docs = app.request(Method::GET, "/docs", None, None).await;
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.unwrap().contains("swagger-ui"));
}

#[tokio::test]
async fn an_unknown_route_is_a_404_problem() {
    let app = spawn_app().await;
    let response = app.request(Method::GET, "/v1/nowhere", None, None).await;
    crate::helpers::assert_problem(response, StatusCode::NOT_FOUND).await;
}

/// The value of the unlabelled series `name` in a `/metrics` text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map(|value| value.trim().parse().unwrap())
}

async fn metrics_text(app: &crate::helpers::TestApp) -> String {
    app.request(Method::GET, "/metrics", None, None)
        .await
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_series_is_described_and_the_operator_gauges_are_exported() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 100, 5).await;
    let (_, buyer) = app.account("buyer").await;
    app.add_to_cart(&buyer, "MUG", 1).await;
    let order = app.checkout(&buyer).await;
    app.wait_for_event("order", &order.to_string(), "OrderConfirmed")
        .await;
    // The database gauges are refreshed at start, then every few seconds.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    let text = loop {
        let text = metrics_text(&app).await;
        if sample(&text, "commerce_stuck_sagas").is_some()
            && sample(&text, "commerce_xid_horizon_age_seconds").is_some()
            && sample(&text, "commerce_webhook_deliveries_pending").is_some()
        {
            break text;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };

    let described: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# HELP "))
        .filter_map(|help| help.split_whitespace().next())
        .collect();
    let mut series = 0;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = line.split(['{', ' ']).next().unwrap();
        if !name.starts_with("commerce_") && !name.starts_with("http_") {
            continue;
        }
        series += 1;
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| described.contains(base))
            .unwrap_or(name);
        assert!(described.contains(&base), "{name} has no # HELP:\n{text}");
    }
    assert!(series > 10, "{text}");

    let version = env!("CARGO_PKG_VERSION");
    assert!(
        text.lines().any(|l| l.starts_with("commerce_build_info{")
            && l.contains(&format!("version=\"{version}\""))
            && l.ends_with(" 1")),
        "{text}"
    );
    assert!(sample(&text, "commerce_stuck_sagas").unwrap() >= 0.0);
    assert!(sample(&text, "commerce_xid_horizon_age_seconds").unwrap() >= 0.0);
    assert_eq!(
        sample(&text, "commerce_webhook_deliveries_pending"),
        Some(0.0)
    );
    for projection in ["orders", "carts", "inventory", "saga_triggers"] {
        assert!(
            text.contains(&format!(
                "commerce_dead_letters{{projection=\"{projection}\"}}"
            )),
            "{projection}: {text}"
        );
    }
}

#[tokio::test]
async fn a_stuck_saga_and_an_old_open_transaction_show_in_the_gauges() {
    let app = spawn_app().await;
    let saga = uuid::Uuid::now_v7();
    sqlx::query(
        "WITH letter AS ( \
           INSERT INTO dead_letters (projection, aggregate_type, aggregate_id, sequence, position, \
                                     event_type, event_version, payload, metadata, recorded_at, error, attempts) \
           VALUES ('saga_triggers', 'order', $1, 1, 1, 'OrderPlaced', '2.0', '{}', '{}', now(), 'broken', 3) \
           RETURNING id) \
         INSERT INTO stuck_sagas (saga_id, projection, dead_letter_id, reason) \
         SELECT $2, 'saga_triggers', id, 'broken' FROM letter",
    )
    .bind(saga.to_string())
    .bind(saga)
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(commerce::metrics::stuck_sagas(&app.pool).await.unwrap(), 1);

    // Deadlines, seen inside a transaction so that no saga worker claims them: overdue by a
    // minute and never leased, or leased by a worker that went away, count; overdue by less
    // than 30 s, or held by a live lease, do not; nor does the stuck saga twice.
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO saga_deadlines (saga_id, due_at, reason, locked_by, locked_until) VALUES \
           (gen_random_uuid(), now() - interval '1 minute', 'retry', NULL, NULL), \
           (gen_random_uuid(), now() - interval '1 minute', 'retry', 'gone', now() - interval '5 seconds'), \
           (gen_random_uuid(), now() - interval '10 seconds', 'retry', NULL, NULL), \
           (gen_random_uuid(), now() - interval '1 minute', 'retry', 'alive', now() + interval '1 minute'), \
           ($1, now() - interval '1 minute', 'retry', NULL, NULL)",
    )
    .bind(saga)
    .execute(&mut *tx)
    .await
    .unwrap();
    assert_eq!(commerce::metrics::stuck_sagas(&mut *tx).await.unwrap(), 3);
    tx.rollback().await.unwrap();

    // A transaction that took an id holds the horizon back for as long as it stays open.
    let mut open = app.pool.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *open)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let age = commerce::metrics::xid_horizon_age_seconds(&app.pool)
        .await
        .unwrap();
    assert!(age >= 1.5, "{age}");

    // The refresher exports both (the gauges are process-wide: other tests' engines set them
    // too, so wait for a refresh of this one's).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = metrics_text(&app).await;
        let stuck = sample(&text, "commerce_stuck_sagas").unwrap_or_default();
        let age = sample(&text, "commerce_xid_horizon_age_seconds").unwrap_or_default();
        if stuck >= 1.0 && age >= 1.5 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stuck {stuck}, age {age}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    open.rollback().await.unwrap();
}

//! The checkout saga end to end: every sandbox token, stock conservation, the last-item race,
//! compensation, buyer cancellation and returns, and a worker dying mid-saga.

use std::sync::Arc;
use std::time::Duration;

use commerce_domain::services::{GatewayError, GatewayFuture, PaymentGateway};
use commerce_domain::{Money, OrderId, PaymentId};
use commerce_sagas::gateway::{GatewayClientConfig, HttpGateway};
use commerce_sagas::{run_worker, SagaConfig, SagaDriver, WorkerConfig};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::{assert_problem, checkout_body, spawn_app, spawn_app_with, TestApp};

pub const TERMINAL: &[&str] = &["confirmed", "cancelled", "refunded"];

impl TestApp {
    /// Waits until the saga of `order_id` has nothing left to do: every order event so far has
    /// reached the saga triggers, no wake-up is pending, and its last step completed it.
    pub async fn wait_for_saga(&self, order_id: Uuid) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let at = self.last_position().await;
            let triggered = commerce_projections::wait_for_position(
                &self.pool,
                &["saga_triggers"],
                at,
                Duration::from_secs(10),
            )
            .await
            .unwrap();
            // A delivered order's saga keeps a row due when its return window closes.
            let due: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM saga_deadlines WHERE saga_id = $1 \
                 AND (due_at <= now() OR locked_until IS NOT NULL)",
            )
            .bind(order_id)
            .fetch_one(&self.pool)
            .await
            .unwrap();
            let saga = self.stream("checkout_saga", &order_id.to_string()).await;
            let settled = ["SagaCompleted", "DeliveryNoted", "StockSettled"];
            if triggered
                && due == 0
                && saga
                    .last()
                    .is_some_and(|step| settled.contains(&step.as_str()))
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "saga {order_id} never settled: {saga:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stock levels once every event so far is in the read model.
    pub async fn stock(&self, sku: &str) -> Value {
        let at = self.last_position().await;
        self.read_json(&format!("/v1/inventory/{sku}"), None, at)
            .await
    }

    /// The order's payment, as the query API shows it once position `at` is applied.
    pub async fn payment(&self, order_id: Uuid, buyer: &str, at: i64) -> Value {
        self.read_json(&format!("/v1/orders/{order_id}/payment"), Some(buyer), at)
            .await
    }

    /// What the sandbox recorded of an order's payment.
    pub async fn sandbox_payment(&self, order_id: Uuid) -> Value {
        let payment_id = PaymentId::for_order(OrderId(order_id));
        self.client
            .get(format!("{}/v1/payments/{payment_id}", self.gateway_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A buyer who checks out `quantity` of `sku` paying with `token`: `(buyer token, order id)`.
    pub async fn order_with(&self, sku: &str, quantity: u32, token: &str) -> (String, Uuid) {
        let (_, buyer) = self.account("buyer").await;
        self.add_to_cart(&buyer, sku, quantity).await;
        let mut body = checkout_body();
        body["payment_token"] = json!(token);
        let response = self.post("/v1/me/cart/checkout", Some(&buyer), body).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let order_id = response.json::<Value>().await.unwrap()["order_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        (buyer, order_id)
    }
}

fn levels(on_hand: i64, reserved: i64) -> (i64, i64, i64) {
    (on_hand, reserved, on_hand - reserved)
}

fn stock_of(stock: &Value) -> (i64, i64, i64) {
    (
        stock["on_hand"].as_i64().unwrap(),
        stock["reserved"].as_i64().unwrap(),
        stock["available"].as_i64().unwrap(),
    )
}

fn steps(order: &Value) -> Vec<String> {
    order["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn tok_ok_confirms_captures_and_sells_the_units() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 1250, 5).await;
    let (buyer, order_id) = app.order_with("MUG", 2, "tok_ok").await;
    let order = app.wait_for_order(order_id, &buyer, TERMINAL).await;
    assert_eq!(order["status"], "confirmed");
    assert_eq!(
        steps(&order),
        ["pending", "reserved", "authorized", "confirmed"]
    );
    app.wait_for_saga(order_id).await;
    assert_eq!(stock_of(&app.stock("MUG").await), levels(3, 0));
    let at = app.last_position().await;
    let payment = app.payment(order_id, &buyer, at).await;
    assert_eq!(payment["status"], "captured");
    assert_eq!(
        payment["amount"],
        json!({"amount": 2500, "currency": "EUR"})
    );
    let sandbox = app.sandbox_payment(order_id).await;
    assert_eq!(sandbox["status"], "captured");
    assert_eq!(sandbox["successful_authorizations"], 1);
    let notes = app
        .read_json("/v1/me/notifications", Some(&buyer), at)
        .await;
    let kinds: Vec<&str> = notes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["order_confirmed", "order_placed"]);
}

#[tokio::test]
async fn tok_decline_cancels_with_a_readable_reason_and_releases_the_units() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 1250, 5).await;
    let (buyer, order_id) = app.order_with("MUG", 2, "tok_decline").await;
    let order = app.wait_for_order(order_id, &buyer, TERMINAL).await;
    assert_eq!(order["status"], "cancelled");
    assert!(
        order["cancellation_reason"]
            .as_str()
            .unwrap()
            .contains("declined"),
        "{order}"
    );
    app.wait_for_saga(order_id).await;
    assert_eq!(stock_of(&app.stock("MUG").await), levels(5, 0));
    let at = app.last_position().await;
    let payment = app.payment(order_id, &buyer, at).await;
    assert_eq!(payment["status"], "declined");
    let notes = app
        .read_json("/v1/me/notifications", Some(&buyer), at)
        .await;
    let kinds: Vec<&str> = notes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"payment_failed") && kinds.contains(&"order_cancelled"),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn tok_flaky_is_retried_into_exactly_one_authorisation() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 1250, 5).await;
    let (buyer, order_id) = app.order_with("MUG", 1, "tok_flaky").await;
    let order = app.wait_for_order(order_id, &buyer, TERMINAL).await;
    assert_eq!(order["status"], "confirmed");
    app.wait_for_saga(order_id).await;
    assert_eq!(
        app.sandbox_payment(order_id).await["successful_authorizations"],
        1
    );
    assert_eq!(stock_of(&app.stock("MUG").await), levels(4, 0));
    let at = app.last_position().await;
    let payment = app.payment(order_id, &buyer, at).await;
    assert_eq!(payment["status"], "captured");
}

#[tokio::test]
async fn tok_timeout_cancels_after_the_payment_timeout_and_releases_the_units() {
    let app = spawn_app_with(|config| config.payment_timeout = Duration::from_millis(800)).await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 1250, 5).await;
    let (buyer, order_id) = app.order_with("MUG", 1, "tok_timeout").await;
    let order = app.wait_for_order(order_id, &buyer, TERMINAL).await;
    assert_eq!(order["status"], "cancelled");
    assert!(
        order["cancellation_reason"]
            .as_str()
            .unwrap()
            .contains("did not answer"),
        "{order}"
    );
    app.wait_for_saga(order_id).await;
    assert_eq!(stock_of(&app.stock("MUG").await), levels(5, 0));
    let at = app.last_position().await;
    let payment = app.payment(order_id, &buyer, at).await;
    assert_eq!(payment["status"], "timed_out", "{payment}");
    assert_ne!(app.sandbox_payment(order_id).await["status"], "authorized");
    let cart = app.read_json("/v1/me/cart", Some(&buyer), at).await;
    assert_eq!(
        cart["items"][0]["quantity"], 1,
        "the cart is given back: {cart}"
    );
}

#[tokio::test]
async fn a_late_answer_after_the_timeout_changes_nothing() {
    // tok_slow answers after 2 s: past this engine's 500 ms timeout.
    let app = spawn_app_with(|config| config.payment_timeout = Duration::from_millis(500)).await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 1250, 5).await;
    let (buyer, order_id) = app.order_with("MUG", 1, "tok_slow").await;
    let order = app.wait_for_order(order_id, &buyer, TERMINAL).await;
    assert_eq!(order["status"], "cancelled");
    app.wait_for_saga(order_id).await;
    // Let the late answer land, then check nothing moved.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let order = app.wait_for_order(order_id, &buyer, TERMINAL).await;
    assert_eq!(order["status"], "cancelled");
    assert_eq!(stock_of(&app.stock("MUG").await), levels(5, 0));
    let sandbox = app.sandbox_payment(order_id).await;
    assert_ne!(sandbox["status"], "authorized", "{sandbox}");
    assert_ne!(sandbox["status"], "captured", "{sandbox}");
    let at = app.last_position().await;
    let payment = app.payment(order_id, &buyer, at).await;
    assert_eq!(payment["status"], "timed_out", "{payment}");
}

#[tokio::test]
async fn the_last_item_race_confirms_exactly_the_stock() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "LAST", 999, 5).await;
    let mut buyers = Vec::new();
    for _ in 0..30 {
        let (_, buyer) = app.account("buyer").await;
        app.add_to_cart(&buyer, "LAST", 1).await;
        buyers.push(buyer);
    }
    let app = &app;
    let checkouts = buyers.iter().map(|buyer| async move {
        let response = app
            .post("/v1/me/cart/checkout", Some(buyer), checkout_body())
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let order_id: Uuid = response.json::<Value>().await.unwrap()["order_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        app.wait_for_order(order_id, buyer, TERMINAL).await
    });
    let orders = futures::future::join_all(checkouts).await;
    let confirmed = orders.iter().filter(|o| o["status"] == "confirmed").count();
    let cancelled: Vec<&Value> = orders
        .iter()
        .filter(|o| o["status"] == "cancelled")
        .collect();
    assert_eq!(confirmed, 5);
    assert_eq!(cancelled.len(), 25);
    assert!(cancelled.iter().all(|o| o["cancellation_reason"]
        .as_str()
        .unwrap()
        .contains("out of stock")));
    for order in &orders {
        app.wait_for_saga(order["order_id"].as_str().unwrap().parse().unwrap())
            .await;
    }
    assert_eq!(stock_of(&app.stock("LAST").await), levels(0, 0));
    // Never negative: every level the SKU ever had kept available ≥ 0.
    let lowest: i64 = sqlx::query_scalar(
        "SELECT min((payload -> (SELECT key FROM jsonb_each(payload) LIMIT 1) -> 'levels' ->> 'on_hand')::bigint \
                  - (payload -> (SELECT key FROM jsonb_each(payload) LIMIT 1) -> 'levels' ->> 'reserved')::bigint) \
         FROM events WHERE aggregate_type = 'inventory' AND aggregate_id = 'LAST'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(lowest >= 0, "available went to {lowest}");
}

#[tokio::test]
async fn a_second_line_that_cannot_be_reserved_releases_the_first() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "A-FIRST", 100, 5).await;
    app.product(&seller, "B-SECOND", 100, 0).await;
    app.post(
        "/v1/inventory/B-SECOND/restock",
        Some(&seller),
        json!({"quantity": 1}),
    )
    .await;
    let (_, buyer) = app.account("buyer").await;
    app.add_to_cart(&buyer, "A-FIRST", 2).await;
    app.add_to_cart(&buyer, "B-SECOND", 3).await;
    let order_id = app.checkout(&buyer).await;
    let order = app.wait_for_order(order_id, &buyer, TERMINAL).await;
    assert_eq!(order["status"], "cancelled");
    assert!(
        order["cancellation_reason"]
            .as_str()
            .unwrap()
            .contains("out of stock: B-SECOND"),
        "{order}"
    );
    app.wait_for_saga(order_id).await;
    assert_eq!(stock_of(&app.stock("A-FIRST").await), levels(5, 0));
    assert_eq!(stock_of(&app.stock("B-SECOND").await), levels(1, 0));
    let saga = app.stream("checkout_saga", &order_id.to_string()).await;
    assert!(
        saga.contains(&"LineReserved".to_owned()) && saga.contains(&"LineReleased".to_owned()),
        "{saga:?}"
    );
}

#[tokio::test]
async fn the_buyer_cancels_a_confirmed_order_and_gets_stock_back_and_a_refund() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 1250, 5).await;
    let (buyer, order_id) = app.order_with("MUG", 2, "tok_ok").await;
    app.wait_for_order(order_id, &buyer, &["confirmed"]).await;
    app.wait_for_saga(order_id).await;
    let response = app
        .post(
            &format!("/v1/orders/{order_id}/cancel"),
            Some(&buyer),
            json!({"reason": "changed my mind"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    app.wait_for_order(order_id, &buyer, &["cancelled"]).await;
    app.wait_for_saga(order_id).await;
    assert_eq!(stock_of(&app.stock("MUG").await), levels(5, 0));
    let at = app.last_position().await;
    let payment = app.payment(order_id, &buyer, at).await;
    assert_eq!(payment["status"], "refunded");
    assert_eq!(app.sandbox_payment(order_id).await["status"], "refunded");
}

#[tokio::test]
async fn cancelling_after_shipping_is_409() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 1250, 5).await;
    let (buyer, order_id) = app.order_with("MUG", 1, "tok_ok").await;
    app.wait_for_order(order_id, &buyer, &["confirmed"]).await;
    let response = app
        .post(
            &format!("/v1/orders/{order_id}/shipments"),
            Some(&seller),
            json!({"carrier": "DHL", "tracking_number": "1"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .post(
            &format!("/v1/orders/{order_id}/cancel"),
            Some(&buyer),
            json!({}),
        )
        .await;
    assert_problem(response, StatusCode::CONFLICT).await;
}

#[tokio::test]
async fn a_returned_order_is_refunded() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 1250, 5).await;
    let (buyer, order_id) = app.order_with("MUG", 1, "tok_ok").await;
    app.wait_for_order(order_id, &buyer, &["confirmed"]).await;
    app.wait_for_saga(order_id).await;
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
            &format!("/v1/orders/{order_id}/returns"),
            Some(&buyer),
            json!({"reason": "too small"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let order = app.wait_for_order(order_id, &buyer, &["refunded"]).await;
    assert_eq!(
        steps(&order),
        [
            "pending",
            "reserved",
            "authorized",
            "confirmed",
            "shipped",
            "delivered",
            "returned",
            "refunded"
        ]
    );
    app.wait_for_saga(order_id).await;
    assert_eq!(app.sandbox_payment(order_id).await["status"], "refunded");
    assert_eq!(stock_of(&app.stock("MUG").await), levels(5, 0));
}

/// A gateway whose authorisations never return: the worker using it is stuck mid-saga.
struct Stuck;

impl PaymentGateway for Stuck {
    fn authorize<'a>(
        &'a self,
        _: PaymentId,
        _: Money,
        _: &'a str,
        _: Duration,
    ) -> GatewayFuture<'a, String> {
        Box::pin(std::future::pending())
    }
    fn capture(&self, _: PaymentId, _: Money) -> GatewayFuture<'_, ()> {
        Box::pin(async { Err(GatewayError::Unavailable("stuck".into())) })
    }
    fn void(&self, _: PaymentId) -> GatewayFuture<'_, ()> {
        Box::pin(async { Err(GatewayError::Unavailable("stuck".into())) })
    }
    fn refund(&self, _: PaymentId, _: Money) -> GatewayFuture<'_, ()> {
        Box::pin(async { Err(GatewayError::Unavailable("stuck".into())) })
    }
}

#[tokio::test]
async fn a_worker_killed_mid_saga_is_replaced_and_no_step_happens_twice() {
    let app = spawn_app_with(|config| config.saga_workers = 0).await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 1250, 5).await;
    let (buyer, order_id) = app.order_with("MUG", 1, "tok_ok").await;

    let saga_config = SagaConfig {
        payment_timeout: Duration::from_secs(20),
        ..SagaConfig::default()
    };
    let mut worker_config = WorkerConfig::for_payment_timeout(Duration::ZERO);
    worker_config.lease = Duration::from_millis(800);
    worker_config.poll_interval = Duration::from_millis(50);

    // The first worker gets as far as asking for the payment, then hangs; then it is killed.
    let stuck = Arc::new(SagaDriver::new(
        app.pool.clone(),
        Arc::new(Stuck),
        saga_config.clone(),
    ));
    let first = CancellationToken::new();
    let mut first_config = worker_config.clone();
    first_config.name = "doomed".into();
    let doomed = tokio::spawn(run_worker(stuck, first_config, first.clone()));
    app.wait_for_event(
        "checkout_saga",
        &order_id.to_string(),
        "AuthorizationRequested",
    )
    .await;
    doomed.abort();

    // Another worker takes the saga over once the dead one's lease lapses, and finishes it.
    let gateway = HttpGateway::new(&app.gateway_url, GatewayClientConfig::default()).unwrap();
    let healthy = Arc::new(SagaDriver::new(
        app.pool.clone(),
        Arc::new(gateway),
        saga_config,
    ));
    let second = CancellationToken::new();
    let _worker = tokio::spawn(run_worker(healthy, worker_config, second.clone()));
    let order = app.wait_for_order(order_id, &buyer, TERMINAL).await;
    assert_eq!(order["status"], "confirmed");
    app.wait_for_saga(order_id).await;
    second.cancel();

    let saga = app.stream("checkout_saga", &order_id.to_string()).await;
    let mut unique = saga.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        saga.len(),
        "a step was recorded twice: {saga:?}"
    );
    assert_eq!(
        app.sandbox_payment(order_id).await["successful_authorizations"],
        1
    );
    assert_eq!(
        app.stream("order", &order_id.to_string()).await,
        [
            "OrderPlaced",
            "InventoryReserved",
            "PaymentAuthorized",
            "OrderConfirmed"
        ]
    );
    assert_eq!(stock_of(&app.stock("MUG").await), levels(4, 0));
}

#[tokio::test]
async fn a_delivered_order_is_final_after_its_return_window_and_its_sku_forgets_it() {
    let app = spawn_app_with(|config| config.return_window = Duration::from_secs(1)).await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 1250, 5).await;
    let (buyer, order_id) = app.order_with("MUG", 2, "tok_ok").await;
    app.wait_for_order(order_id, &buyer, &["confirmed"]).await;
    let shipment = json!({"carrier": "DHL", "tracking_number": "1"});
    let path = format!("/v1/orders/{order_id}/shipments");
    app.post(&path, Some(&seller), shipment).await;
    let path = format!("/v1/orders/{order_id}/delivery");
    app.request(Method::POST, &path, Some(&seller), None).await;

    // The window closes a second after delivery: the order is closed for returns and the SKU
    // settles the sale, so its state no longer carries the order.
    app.wait_for_event("inventory", "MUG", "Settled").await;
    app.wait_for_saga(order_id).await;
    let inventory = commerce_store::repository::load_from_store::<
        commerce_domain::inventory::Inventory,
    >(&app.pool, "MUG")
    .await
    .unwrap();
    assert!(
        inventory.state.committed.is_empty(),
        "{:?}",
        inventory.state
    );
    assert_eq!(stock_of(&app.stock("MUG").await), levels(3, 0));
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM saga_deadlines WHERE saga_id = $1")
        .bind(order_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0, "a settled saga keeps no deadline");

    let response = app
        .post(
            &format!("/v1/orders/{order_id}/returns"),
            Some(&buyer),
            json!({"reason": "too late"}),
        )
        .await;
    assert_problem(response, StatusCode::CONFLICT).await;
    assert_eq!(stock_of(&app.stock("MUG").await), levels(3, 0));
}

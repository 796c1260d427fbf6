//! Webhooks end to end: real deliveries to a receiver in the test, checked with its own
//! implementation of the Standard Webhooks signature; retries, replay, a seller's scope, the
//! circuit breaker, URL checks and forgotten people.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_problem, spawn_app_with, TestApp};
use crate::receiver::{verify, Received, Receiver};

/// An engine that may deliver to loopback receivers and retries fast.
pub async fn app() -> TestApp {
    spawn_app_with(|config| {
        config.webhook_allow_private = true;
        config.webhook_first_retry = Duration::from_millis(200);
    })
    .await
}

impl TestApp {
    /// Subscribes `url` to `event_types`: `(webhook_id, secret)`.
    pub async fn subscribe(&self, token: &str, url: &str, event_types: &[&str]) -> (Uuid, String) {
        let response = self
            .post(
                "/v1/webhooks",
                Some(token),
                json!({"url": url, "event_types": event_types}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let body: Value = response.json().await.unwrap();
        let id: Uuid = body["webhook_id"].as_str().unwrap().parse().unwrap();
        assert_eq!(location, format!("/v1/webhooks/{id}"));
        (id, body["secret"].as_str().unwrap().to_owned())
    }

    /// The webhook's delivery log (first page of 100).
    async fn deliveries(&self, token: &str, webhook: Uuid) -> Vec<Value> {
        let response = self
            .request(
                Method::GET,
                &format!("/v1/webhooks/{webhook}/deliveries?limit=100"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json::<Value>().await.unwrap()["items"]
            .as_array()
            .unwrap()
            .clone()
    }
}

fn types(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn deliveries_are_signed_as_standard_webhooks_specify_and_a_rotation_signs_with_both_secrets()
{
    let app = app().await;
    let receiver = Receiver::start().await;
    let admin = app.admin_token().await;
    let (webhook, secret) = app
        .subscribe(
            &admin,
            &receiver.url,
            &["product.ProductCreated", "inventory.*"],
        )
        .await;
    assert!(secret.starts_with("whsec_"));
    let (_, seller) = app.account("seller").await;
    let product = app.product(&seller, "HOOK-1", 1250, 4).await;

    receiver
        .wait_until("the product's creation and restock", |r| r.len() >= 2)
        .await;
    // Only each aggregate's events are ordered: the product's and the SKU's may arrive either
    // way round.
    let mut received = receiver.received();
    received.sort_by_key(|r| r.json()["position"].as_i64());
    assert_eq!(
        types(&received),
        ["product.ProductCreated", "inventory.Restocked"]
    );
    for delivery in &received {
        verify(&secret, delivery).unwrap();
        let wrong = format!("whsec_{}", base64_of(b"not the webhook's secret key!!"));
        assert!(verify(&wrong, delivery).is_err(), "a wrong secret verified");
        let mut tampered = delivery.clone();
        tampered.body = tampered
            .body
            .iter()
            .rev()
            .copied()
            .collect::<Vec<u8>>()
            .into();
        assert!(
            verify(&secret, &tampered).is_err(),
            "a changed body verified"
        );
    }
    let created = received[0].json();
    assert_eq!(created["aggregate_type"], "product");
    assert_eq!(created["aggregate_id"], product.to_string());
    assert_eq!(created["data"]["product"]["sku"], "HOOK-1");
    assert!(created["event_id"]
        .as_str()
        .unwrap()
        .parse::<Uuid>()
        .is_ok());
    assert!(created["position"].as_i64().unwrap() >= 1);
    assert!(created["occurred_at"].as_str().is_some());
    assert_eq!(received[1].json()["data"]["quantity"], 4);

    // Rotation: for a while both secrets sign.
    let response = app
        .post(
            &format!("/v1/webhooks/{webhook}/secret"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let rotated = response.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(rotated, secret);
    let restock = app
        .post(
            "/v1/inventory/HOOK-1/restock",
            Some(&seller),
            json!({"quantity": 1}),
        )
        .await;
    assert_eq!(restock.status(), StatusCode::OK);
    receiver
        .wait_until("the second restock", |r| r.len() >= 3)
        .await;
    let after = &receiver.received()[2];
    assert_eq!(after.signature.split(' ').count(), 2, "{}", after.signature);
    verify(&rotated, after).unwrap();
    verify(&secret, after).unwrap();
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn a_receiver_failing_three_times_gets_the_same_webhook_id_until_it_succeeds_and_the_log_shows_every_attempt(
) {
    let app = app().await;
    let receiver = Receiver::start().await;
    receiver.fail_next(3);
    let (_, seller) = app.account("seller").await;
    let (webhook, secret) = app
        .subscribe(&seller, &receiver.url, &["product.ProductCreated"])
        .await;
    app.product(&seller, "RETRY-1", 500, 0).await;

    receiver
        .wait_until("a delivery answered 2xx", |r| {
            r.iter().any(|r| r.status == 204)
        })
        .await;
    let received = receiver.received();
    assert_eq!(received.len(), 4, "three failures and a success");
    assert!(
        received.iter().all(|r| r.id == received[0].id),
        "the webhook-id changed"
    );
    assert_eq!(
        received.iter().map(|r| r.status).collect::<Vec<_>>(),
        [500, 500, 500, 204]
    );
    for r in &received {
        verify(&secret, r).unwrap();
    }

    let log = app.deliveries(&seller, webhook).await;
    assert_eq!(log.len(), 1);
    let delivery = &log[0];
    assert_eq!(delivery["state"], "delivered");
    assert_eq!(delivery["message_id"], received[0].id.as_str());
    let attempts = delivery["attempts"].as_array().unwrap();
    assert_eq!(
        attempts
            .iter()
            .map(|a| a["status"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [500, 500, 500, 204]
    );
    assert!(attempts.iter().all(|a| a["latency_ms"].as_i64().is_some()));
    let at = |i: usize| {
        chrono::DateTime::parse_from_rfc3339(attempts[i]["attempted_at"].as_str().unwrap()).unwrap()
    };
    assert!(at(0) < at(1) && at(1) < at(2) && at(2) < at(3));
    assert!(
        at(2) - at(1) >= chrono::Duration::milliseconds(150),
        "no backoff between retries"
    );

    // A manual redelivery sends it once more, under the same id.
    let delivery_id = delivery["delivery_id"].as_i64().unwrap();
    let response = app
        .post(
            &format!("/v1/webhooks/{webhook}/deliveries/{delivery_id}/retry"),
            Some(&seller),
            json!({}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    receiver
        .wait_until("the redelivery", |r| r.len() == 5)
        .await;
    assert_eq!(receiver.received()[4].id, received[0].id);
}

#[tokio::test]
async fn replay_from_a_position_redelivers_exactly_the_matching_events_since_then_with_the_same_ids_in_order(
) {
    let app = app().await;
    let receiver = Receiver::start().await;
    let admin = app.admin_token().await;
    let (_, seller) = app.account("seller").await;
    // Events before the webhook exists: not delivered live, but replayed.
    app.product(&seller, "EARLY-1", 100, 2).await;
    let (webhook, _) = app.subscribe(&admin, &receiver.url, &["inventory.*"]).await;
    for round in 0..3 {
        for sku in ["EARLY-1", "LATE-1"] {
            if round == 0 && sku == "LATE-1" {
                app.product(&seller, sku, 100, 1).await;
                continue;
            }
            let response = app
                .post(
                    &format!("/v1/inventory/{sku}/restock"),
                    Some(&seller),
                    json!({"quantity": 1}),
                )
                .await;
            assert_eq!(response.status(), StatusCode::OK);
        }
    }
    // Live: EARLY-1 and LATE-1 restocked three times each (LATE-1's first at its creation).
    receiver
        .wait_until("six live restocks", |r| r.len() >= 6)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let live = receiver.received();
    assert_eq!(live.len(), 6, "{:?}", types(&live));
    let id_of: HashMap<i64, String> = live
        .iter()
        .map(|r| (r.json()["position"].as_i64().unwrap(), r.id.clone()))
        .collect();

    // Replay from the first live event's position: exactly the live ones again.
    let from = live
        .iter()
        .map(|r| r.json()["position"].as_i64().unwrap())
        .min()
        .unwrap();
    let response = app
        .post(
            &format!("/v1/webhooks/{webhook}/replay"),
            Some(&admin),
            json!({"from_position": from}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.json::<Value>().await.unwrap()["enqueued"], 6);
    receiver.wait_until("the replay", |r| r.len() >= 12).await;
    let replayed = &receiver.received()[6..];
    for r in replayed {
        let position = r.json()["position"].as_i64().unwrap();
        assert_eq!(
            id_of.get(&position),
            Some(&r.id),
            "a replayed event changed its webhook-id"
        );
    }
    assert_in_order_per_aggregate(replayed);

    // From the beginning: the restock before the webhook existed too, under an id of its own.
    let response = app
        .post(
            &format!("/v1/webhooks/{webhook}/replay"),
            Some(&admin),
            json!({"from_position": 1}),
        )
        .await;
    assert_eq!(response.json::<Value>().await.unwrap()["enqueued"], 7);
    receiver
        .wait_until("the full replay", |r| r.len() >= 19)
        .await;
    let full = &receiver.received()[12..];
    assert_in_order_per_aggregate(full);
    let early: Vec<&Received> = full
        .iter()
        .filter(|r| !id_of.contains_key(&r.json()["position"].as_i64().unwrap()))
        .collect();
    assert_eq!(early.len(), 1);
    assert!(live.iter().all(|r| r.id != early[0].id));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.received().len(),
        19,
        "more than the matching events were sent"
    );
    assert!(types(&receiver.received())
        .iter()
        .all(|t| t.starts_with("inventory.")));
}

fn assert_in_order_per_aggregate(received: &[Received]) {
    let mut last: HashMap<String, i64> = HashMap::new();
    for r in received {
        let body = r.json();
        let aggregate = body["aggregate_id"].as_str().unwrap().to_owned();
        let sequence = body["sequence"].as_i64().unwrap();
        if let Some(before) = last.insert(aggregate.clone(), sequence) {
            assert!(before < sequence, "{aggregate}: {sequence} after {before}");
        }
    }
}

#[tokio::test]
async fn a_sellers_webhook_never_receives_another_sellers_events_or_lines() {
    let app = app().await;
    let receiver = Receiver::start().await;
    let admin_receiver = Receiver::start().await;
    let (mine_id, mine) = app.account("seller").await;
    let (_, theirs) = app.account("seller").await;
    let (_, buyer) = app.account("buyer").await;
    let admin = app.admin_token().await;
    let (webhook, _) = app.subscribe(&mine, &receiver.url, &["*"]).await;
    app.subscribe(&admin, &admin_receiver.url, &["order.OrderPlaced"])
        .await;

    app.product(&mine, "MINE-1", 1000, 5).await;
    app.product(&theirs, "THEIRS-1", 7777, 5).await;
    app.add_to_cart(&buyer, "MINE-1", 1).await;
    app.add_to_cart(&buyer, "THEIRS-1", 2).await;
    let order = app.checkout(&buyer).await;
    app.wait_for_order(order, &buyer, &["confirmed"]).await;
    receiver
        .wait_until("the order's confirmation", |r| {
            types(r).contains(&"order.OrderConfirmed".to_owned())
        })
        .await;
    admin_receiver
        .wait_until("the order", |r| !r.is_empty())
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = receiver.received();
    let seen = types(&received);
    for expected in [
        "product.ProductCreated",
        "inventory.Restocked",
        "inventory.Reserved",
        "order.OrderPlaced",
    ] {
        assert!(
            seen.contains(&expected.to_owned()),
            "{expected} missing from {seen:?}"
        );
    }
    for r in &received {
        let text = String::from_utf8_lossy(&r.body);
        assert!(
            !text.contains("THEIRS-1") && !text.contains("7777"),
            "another seller's data: {text}"
        );
        let body = r.json();
        assert!(
            ["product", "inventory", "order"].contains(&body["aggregate_type"].as_str().unwrap()),
            "{body}"
        );
        assert!(
            body["data"].get("buyer_id").is_none(),
            "the buyer was shown: {body}"
        );
    }
    let placed = received
        .iter()
        .map(Received::json)
        .find(|b| b["type"] == "order.OrderPlaced")
        .unwrap();
    let lines = placed["data"]["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["sku"], "MINE-1");
    assert_eq!(lines[0]["seller_id"], mine_id.to_string());
    assert_eq!(placed["data"]["total"]["amount"], 1000);
    assert!(placed["data"].get("payment_id").is_none());
    // The admin's webhook sees the whole order.
    let whole = admin_receiver.received()[0].json();
    assert_eq!(whole["data"]["lines"].as_array().unwrap().len(), 2);

    // Sellers may not subscribe to what is not theirs, nor see another's webhook.
    let refused = app
        .post(
            "/v1/webhooks",
            Some(&mine),
            json!({"url": receiver.url, "event_types": ["payment.*"]}),
        )
        .await;
    let problem = assert_problem(refused, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["errors"][0]["pointer"], "/event_types/0");
    let one = format!("/v1/webhooks/{webhook}");
    let log = format!("/v1/webhooks/{webhook}/deliveries");
    for (method, path, token, status) in [
        (
            Method::GET,
            one.as_str(),
            Some(&theirs),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            log.as_str(),
            Some(&theirs),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::DELETE,
            one.as_str(),
            Some(&theirs),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/v1/webhooks",
            Some(&buyer),
            StatusCode::FORBIDDEN,
        ),
        (Method::GET, "/v1/webhooks", None, StatusCode::UNAUTHORIZED),
    ] {
        let response = app
            .request(method.clone(), path, token.map(String::as_str), None)
            .await;
        assert_eq!(response.status(), status, "{method} {path}");
    }
    let listed = app
        .request(Method::GET, "/v1/webhooks", Some(&theirs), None)
        .await;
    assert_eq!(listed.json::<Value>().await.unwrap()["items"], json!([]));
}

#[tokio::test]
async fn urls_must_be_public_http_and_bad_subscriptions_change_nothing() {
    let app = spawn_app_with(|_| {}).await;
    let admin = app.admin_token().await;
    for (url, types) in [
        ("http://127.0.0.1:9/hook", json!(["*"])),
        ("http://localhost:9/hook", json!(["*"])),
        ("http://10.0.0.7/hook", json!(["*"])),
        ("http://169.254.169.254/latest/meta-data", json!(["*"])),
        ("ftp://example.com/hook", json!(["*"])),
        ("https://user:pw@example.com/hook", json!(["*"])),
    ] {
        let response = app
            .post(
                "/v1/webhooks",
                Some(&admin),
                json!({"url": url, "event_types": types}),
            )
            .await;
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(problem["errors"][0]["pointer"], "/url", "{url}: {problem}");
    }
    let response = app
        .post(
            "/v1/webhooks",
            Some(&admin),
            json!({"url": "gopher://x", "event_types": ["order.Nope", "OrderPlaced"]}),
        )
        .await;
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let pointers: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["/url", "/event_types/0", "/event_types/1"]);
    let listed = app
        .request(Method::GET, "/v1/webhooks", Some(&admin), None)
        .await;
    assert_eq!(listed.json::<Value>().await.unwrap()["items"], json!([]));

    let catalogue: Value = app
        .request(Method::GET, "/v1/webhooks/event-types", None, None)
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = catalogue["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"order.OrderPlaced") && names.contains(&"payment.PaymentAuthorized"));
}

#[tokio::test]
async fn a_dead_receiver_opens_its_circuit_costs_the_healthy_one_nothing_and_one_probe_closes_it() {
    let app = spawn_app_with(|config| {
        config.webhook_allow_private = true;
        config.webhook_first_retry = Duration::from_millis(200);
        config.webhook_circuit_open_for = Duration::from_secs(4);
    })
    .await;
    let dead = Receiver::start().await;
    dead.fail_always();
    let healthy = Receiver::start().await;
    let admin = app.admin_token().await;
    let (dead_hook, _) = app.subscribe(&admin, &dead.url, &["inventory.*"]).await;
    app.subscribe(&admin, &healthy.url, &["inventory.*"]).await;
    let (_, seller) = app.account("seller").await;
    for i in 0..6 {
        app.product(&seller, &format!("CIRCUIT-{i}"), 100, 1).await;
    }
    healthy.wait_until("every restock", |r| r.len() >= 6).await;
    // Five consecutive failures open the circuit (attempts already in flight then end): then
    // nothing is sent while it is open, though six deliveries wait and, without the circuit,
    // each would be retried every few hundred milliseconds.
    dead.wait_until("five failures", |r| r.len() >= 5).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let opened_after = dead.received().len();
    assert!(
        opened_after < 5 + 6,
        "{opened_after} attempts before the circuit opened"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        dead.received().len(),
        opened_after,
        "the open circuit let requests through"
    );
    let log = app.deliveries(&admin, dead_hook).await;
    assert_eq!(log.len(), 6);
    assert!(log.iter().all(|d| d["state"] == "pending"));

    // The receiver comes back: once the circuit half-opens, one probe goes first; its success
    // closes the circuit and the rest follow.
    dead.recover();
    dead.wait_until("every restock, after the probe", |r| {
        r.iter().filter(|r| r.status == 204).count() >= 6
    })
    .await;
    let after: Vec<_> = dead.received().into_iter().skip(opened_after).collect();
    assert_eq!(after[0].status, 204, "the probe");
    let log = app.deliveries(&admin, dead_hook).await;
    assert!(log.iter().all(|d| d["state"] == "delivered"), "{log:?}");
}

#[tokio::test]
async fn a_delivery_failing_past_its_retry_window_is_failed_and_the_next_event_goes_on() {
    let app = spawn_app_with(|config| {
        config.webhook_allow_private = true;
        config.webhook_first_retry = Duration::from_millis(100);
        config.webhook_retry_for = Duration::from_secs(1);
        // Five failures may open the circuit on the way: not for long.
        config.webhook_circuit_open_for = Duration::from_millis(500);
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.fail_always();
    let admin = app.admin_token().await;
    let (webhook, _) = app.subscribe(&admin, &receiver.url, &["inventory.*"]).await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "WINDOW-1", 100, 1).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let log = app.deliveries(&admin, webhook).await;
        if log.first().is_some_and(|d| d["state"] == "failed") {
            let attempts = log[0]["attempts"].as_array().unwrap();
            assert!(attempts.len() >= 2, "{log:?}");
            assert!(attempts.iter().all(|a| a["status"] == 500));
            assert!(log[0]["finished_at"].is_string());
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never failed: {log:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The same aggregate's next event is not held behind the failed one.
    receiver.recover();
    let restock = app
        .post(
            "/v1/inventory/WINDOW-1/restock",
            Some(&seller),
            json!({"quantity": 1}),
        )
        .await;
    assert_eq!(restock.status(), StatusCode::OK);
    receiver
        .wait_until("the next restock", |r| r.iter().any(|r| r.status == 204))
        .await;
    let delivered = receiver
        .received()
        .into_iter()
        .find(|r| r.status == 204)
        .unwrap();
    assert_eq!(delivered.json()["sequence"], 2);
}

#[tokio::test]
async fn a_forgotten_buyer_stays_forgotten_in_later_deliveries() {
    let app = app().await;
    let receiver = Receiver::start().await;
    let admin = app.admin_token().await;
    let (webhook, _) = app
        .subscribe(&admin, &receiver.url, &["order.OrderPlaced"])
        .await;
    let (_, seller) = app.account("seller").await;
    let (_, buyer) = app.account("buyer").await;
    app.product(&seller, "FORGET-1", 100, 1).await;
    app.add_to_cart(&buyer, "FORGET-1", 1).await;
    app.checkout(&buyer).await;
    receiver.wait_until("the order", |r| !r.is_empty()).await;
    let first = receiver.received()[0].json();
    assert_eq!(first["data"]["shipping_address"]["city"], "London");

    let forgotten = app
        .request(Method::DELETE, "/v1/me", Some(&buyer), None)
        .await;
    assert_eq!(forgotten.status(), StatusCode::ACCEPTED);
    let response = app
        .post(
            &format!("/v1/webhooks/{webhook}/replay"),
            Some(&admin),
            json!({"from_position": 1}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    receiver.wait_until("the replay", |r| r.len() >= 2).await;
    let replayed = &receiver.received()[1];
    assert_eq!(replayed.json()["data"]["shipping_address"], "forgotten");
    assert!(!String::from_utf8_lossy(&replayed.body).contains("Lovelace"));
}

#[tokio::test]
async fn a_retried_subscription_or_rotation_with_its_idempotency_key_happens_once() {
    let app = app().await;
    let receiver = Receiver::start().await;
    let (_, seller) = app.account("seller").await;
    let subscribe = |key: &'static str, types: Value| {
        app.client
            .post(format!("{}/v1/webhooks", app.address))
            .bearer_auth(&seller)
            .header("idempotency-key", key)
            .json(&json!({"url": receiver.url, "event_types": types}))
            .send()
    };
    let first = subscribe("sub-1", json!(["inventory.*"])).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let again = subscribe("sub-1", json!(["inventory.*"])).await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert!(again.headers().contains_key("location"));
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["webhook_id"], first["webhook_id"]);
    assert_eq!(again["secret"], first["secret"]);
    let other = subscribe("sub-1", json!(["product.*"])).await.unwrap();
    assert_problem(other, StatusCode::UNPROCESSABLE_ENTITY).await;
    let listed: Value = app
        .request(Method::GET, "/v1/webhooks", Some(&seller), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);

    let webhook = first["webhook_id"].as_str().unwrap();
    let rotate = || {
        app.client
            .post(format!("{}/v1/webhooks/{webhook}/secret", app.address))
            .bearer_auth(&seller)
            .header("idempotency-key", "rotate-1")
            .send()
    };
    let rotated: Value = rotate().await.unwrap().json().await.unwrap();
    let retried: Value = rotate().await.unwrap().json().await.unwrap();
    assert_eq!(rotated["secret"], retried["secret"]);
    assert_ne!(rotated["secret"], first["secret"]);
    // Rotated once: the original secret still verifies beside the new one.
    app.product(&seller, "IDEM-1", 100, 1).await;
    receiver.wait_until("the restock", |r| !r.is_empty()).await;
    let delivery = &receiver.received()[0];
    verify(first["secret"].as_str().unwrap(), delivery).unwrap();
    verify(rotated["secret"].as_str().unwrap(), delivery).unwrap();
}

#[tokio::test]
async fn finished_deliveries_and_deleted_webhooks_leave_the_log_after_its_retention() {
    let app = spawn_app_with(|config| {
        config.webhook_allow_private = true;
        config.webhook_log_retention = Duration::from_secs(1);
    })
    .await;
    let receiver = Receiver::start().await;
    let admin = app.admin_token().await;
    let (webhook, _) = app.subscribe(&admin, &receiver.url, &["inventory.*"]).await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "PRUNE-1", 100, 1).await;
    receiver.wait_until("the restock", |r| !r.is_empty()).await;
    let deleted = app
        .request(
            Method::DELETE,
            &format!("/v1/webhooks/{webhook}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (deliveries, webhooks): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM webhook_deliveries), (SELECT count(*) FROM webhooks)",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if deliveries == 0 && webhooks == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{deliveries} deliveries and {webhooks} webhooks still kept"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_binary_answer_is_logged_and_ends_the_delivery() {
    let app = app().await;
    let receiver = Receiver::start().await;
    receiver.answer_with(b"\x00\x1f\x8b binary\x00answer");
    let admin = app.admin_token().await;
    let (webhook, _) = app.subscribe(&admin, &receiver.url, &["inventory.*"]).await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "BINARY-1", 100, 1).await;
    receiver.wait_until("the restock", |r| !r.is_empty()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = app.deliveries(&admin, webhook).await;
        if log.first().is_some_and(|d| d["state"] == "delivered") {
            let attempts = log[0]["attempts"].as_array().unwrap();
            assert_eq!(attempts.len(), 1);
            assert_eq!(
                attempts[0]["response_excerpt"],
                "\u{1f}\u{fffd} binaryanswer"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never recorded: {log:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(receiver.received().len(), 1, "sent again");
}

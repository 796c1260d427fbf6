//! Least privilege: payment tokens go to the provider and nowhere else (no event, no message on
//! the bus, nothing once the payment is final), and a seller of some lines of an order reads
//! only those lines.

use std::time::Duration;

use commerce_domain::{OrderId, PaymentId};
use commerce_projections::namespace::Namespace;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{checkout_body, spawn_app, TestApp};

fn eur(amount: i64) -> Value {
    json!({"amount": amount, "currency": "EUR"})
}

/// The statement of the migration that created `payment_tokens` which copies the tokens of
/// open payments out of the orders' events: run again to stand for the upgrade of a store that
/// already held such events.
fn migration_copy() -> String {
    let migration = include_str!("../../../migrations/20261201000060_create_payment_tokens.sql");
    let code: String = migration
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    code.split(';')
        .find(|statement| {
            statement
                .trim_start()
                .starts_with("INSERT INTO payment_tokens")
        })
        .expect("the migration copies the tokens")
        .to_owned()
}

impl TestApp {
    /// Appends an `OrderPlaced` of version 2 (the shape written before tokens left the events)
    /// holding `token`, and upgrades the store as the migration does, in one transaction (the
    /// saga starts as soon as the order is on the bus): the order id.
    pub(crate) async fn place_old_order(&self, version: &str, payload: Value, token: &str) -> Uuid {
        let order_id = OrderId::new();
        let mut payload = payload;
        payload["OrderPlaced"]["payment_id"] = json!(PaymentId::for_order(order_id));
        payload["OrderPlaced"]["payment_token"] = json!(token);
        let request = Uuid::now_v7();
        let actor = payload["OrderPlaced"]["buyer_id"].clone();
        let metadata = json!({"correlation_id": request, "causation_id": request, "actor": actor});
        let mut tx = self.pool.begin().await.unwrap();
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             VALUES ('order', $1, 1, 'OrderPlaced', $2, $3, $4)",
        )
        .bind(order_id.to_string())
        .bind(version)
        .bind(payload)
        .bind(metadata)
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query(&migration_copy())
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        order_id.0
    }

    /// How many card tokens the engine keeps.
    async fn kept_tokens(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM payment_tokens")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Waits (20 s at most) until no card token is kept: every payment is final.
    async fn wait_for_no_kept_token(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.kept_tokens().await > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "a card token is still kept after its payment ended"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every message of the namespace's stream, as text (subject, headers, payload), once the
    /// relay has published every event of the store.
    async fn bus_messages(&self) -> Vec<String> {
        let namespace = Namespace::parse(&self.namespace).unwrap();
        let jetstream =
            async_nats::jetstream::new(async_nats::connect(&self.nats_url).await.unwrap());
        let mut stream = jetstream.get_stream(namespace.stream_name()).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let published = stream.info().await.unwrap().state.messages;
            let events = u64::try_from(self.event_count().await).unwrap();
            if published >= events {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the relay published {published} of {events} events"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let last = stream.info().await.unwrap().state.last_sequence;
        let mut messages = Vec::new();
        for sequence in 1..=last {
            let message = stream.get_raw_message(sequence).await.unwrap();
            messages.push(format!(
                "{} {:?} {}",
                message.subject,
                message.headers,
                String::from_utf8_lossy(&message.payload)
            ));
        }
        messages
    }

    /// Every event of the store, payload and metadata, as text.
    async fn stored_events(&self) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT aggregate_type || ' ' || event_type || ' ' || payload::text || ' ' || metadata::text \
             FROM events ORDER BY position",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }
}

#[tokio::test]
async fn each_seller_of_a_two_seller_order_reads_only_its_own_lines_and_their_total() {
    let app = spawn_app().await;
    let (mug_seller_id, mug_seller) = app.account("seller").await;
    let (pen_seller_id, pen_seller) = app.account("seller").await;
    app.product(&mug_seller, "MUG", 1250, 10).await;
    app.product(&pen_seller, "PEN", 300, 10).await;
    let (buyer_id, buyer) = app.account("buyer").await;
    app.add_to_cart(&buyer, "MUG", 2).await;
    app.add_to_cart(&buyer, "PEN", 3).await;
    let order_id = app.checkout(&buyer).await;
    app.wait_for_order(order_id, &buyer, &["confirmed"]).await;
    let at = app.last_position().await;
    let path = format!("/v1/orders/{order_id}");

    // The buyer and an admin see the whole order.
    let whole = app.read_json(&path, Some(&buyer), at).await;
    assert_eq!(whole["lines"].as_array().unwrap().len(), 2, "{whole}");
    assert_eq!(whole["total"], eur(3400));
    assert_eq!(whole["subtotal"], eur(3400));
    assert_eq!(whole["buyer_id"], buyer_id.to_string());
    let admin = app.admin_token().await;
    assert_eq!(app.read_json(&path, Some(&admin), at).await, whole);

    for (seller, seller_id, sku, total, other_sku, other_id) in [
        (
            &mug_seller,
            mug_seller_id,
            "MUG",
            2500,
            "PEN",
            pen_seller_id,
        ),
        (&pen_seller, pen_seller_id, "PEN", 900, "MUG", mug_seller_id),
    ] {
        let mine = app.read_json(&path, Some(seller), at).await;
        let lines = mine["lines"].as_array().unwrap();
        assert_eq!(lines.len(), 1, "{mine}");
        assert_eq!(lines[0]["sku"], sku);
        assert_eq!(lines[0]["seller_id"], seller_id.to_string());
        // Its own lines' total, and none of the order's amounts.
        assert_eq!(mine["total"], eur(total), "{mine}");
        for hidden in [
            "subtotal",
            "discount",
            "shipping",
            "tax",
            "buyer_id",
            "promotion_code",
        ] {
            assert!(
                mine.get(hidden).is_none(),
                "{sku}'s seller sees {hidden}: {mine}"
            );
        }
        let text = mine.to_string();
        for leak in [
            other_sku,
            &other_id.to_string(),
            "3400",
            &buyer_id.to_string(),
        ] {
            assert!(!text.contains(leak), "{sku}'s seller sees {leak}: {mine}");
        }
        // What it needs to ship: the status, the timeline and the address.
        assert_eq!(mine["status"], "confirmed");
        assert_eq!(mine["timeline"], whole["timeline"]);
        assert_eq!(mine["shipping_address"], whole["shipping_address"]);

        // Its queue shows the same part of the order.
        let queue = app.read_json("/v1/seller/orders", Some(seller), at).await;
        assert_eq!(queue["items"], json!([mine]), "{sku}'s queue");
    }
}

#[tokio::test]
async fn no_event_and_no_message_on_the_bus_holds_a_payment_token_and_none_is_kept_after_the_payment(
) {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 1250, 10).await;
    let (_, buyer) = app.account("buyer").await;

    // One order paid and confirmed, one declined: both ends of a payment.
    app.add_to_cart(&buyer, "MUG", 1).await;
    let paid = app.checkout(&buyer).await;
    let unknown_card = format!("tok_unknown_{}", Uuid::new_v4().simple());
    app.add_to_cart(&buyer, "MUG", 2).await;
    let mut body = checkout_body();
    body["payment_token"] = json!(unknown_card);
    let response = app.post("/v1/me/cart/checkout", Some(&buyer), body).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let declined: Uuid = response.json::<Value>().await.unwrap()["order_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    app.wait_for_order(paid, &buyer, &["confirmed"]).await;
    let cancelled = app.wait_for_order(declined, &buyer, &["cancelled"]).await;
    assert!(
        cancelled["cancellation_reason"]
            .as_str()
            .unwrap()
            .contains("declined"),
        "{cancelled}"
    );
    let captured = PaymentId::for_order(OrderId(paid)).to_string();
    app.wait_for_event("payment", &captured, "PaymentCaptured")
        .await;
    app.wait_for_no_kept_token().await;

    let events = app.stored_events().await;
    let messages = app.bus_messages().await;
    assert!(events.len() > 10 && messages.len() >= events.len());
    for token in ["tok_ok", unknown_card.as_str()] {
        for event in &events {
            assert!(!event.contains(token), "an event holds {token}: {event}");
        }
        for message in &messages {
            assert!(
                !message.contains(token),
                "a message holds {token}: {message}"
            );
        }
    }
}

#[tokio::test]
async fn an_order_placed_at_version_2_with_a_token_reads_without_it_and_completes_with_the_kept_one(
) {
    let app = spawn_app().await;
    let (seller_id, seller) = app.account("seller").await;
    let product_id = app.product(&seller, "MUG", 1250, 10).await;
    let (buyer_id, buyer) = app.account("buyer").await;
    let token = "tok_ok";
    let v2 = json!({"OrderPlaced": {
        "buyer_id": buyer_id,
        "lines": [{"sku": "MUG", "product_id": product_id, "seller_id": seller_id, "quantity": 2,
                   "unit_price": eur(1250)}],
        "subtotal": eur(2500), "discount": eur(0), "shipping": eur(0), "tax": eur(0),
        "total": eur(2500), "promotion_code": null, "shipping_method_id": null,
        "shipping_address": checkout_body()["shipping_address"],
    }});
    let order_id = app.place_old_order("2.0", v2, token).await;
    // The upgrade kept the token of this payment, which is not final yet.
    assert_eq!(app.kept_tokens().await, 1);

    // The saga authorises with the kept token: the order goes the whole way.
    app.wait_for_order(order_id, &buyer, &["confirmed"]).await;
    let payment = PaymentId::for_order(OrderId(order_id)).to_string();
    app.wait_for_event("payment", &payment, "PaymentCaptured")
        .await;
    app.wait_for_no_kept_token().await;

    // An operator reading the stream, or tailing the store, sees version 3, without the token.
    let stream = app
        .admin_get(&format!("/v1/admin/streams/order/{order_id}?limit=100"))
        .await;
    let placed = &stream["items"][0];
    assert_eq!(placed["event_type"], "OrderPlaced");
    assert_eq!(
        placed["event_version"],
        commerce_domain::upcast::current_version("order", "OrderPlaced")
    );
    assert_eq!(placed["payload"]["OrderPlaced"]["total"], eur(2500));
    assert!(!stream.to_string().contains(token), "{stream}");
    let tail = app
        .admin_get("/v1/admin/events?aggregate_type=order&limit=100")
        .await;
    assert!(!tail.to_string().contains(token), "{tail}");
    let state = app
        .admin_get(&format!("/v1/admin/streams/order/{order_id}/state"))
        .await;
    assert!(!state.to_string().contains(token), "{state}");

    // The relay published it without the token too.
    let messages = app.bus_messages().await;
    let published = messages
        .iter()
        .find(|m| m.contains(&order_id.to_string()) && m.contains("OrderPlaced"))
        .expect("the old order was published");
    assert!(!published.contains(token), "{published}");
}

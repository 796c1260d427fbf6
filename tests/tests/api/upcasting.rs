//! Old events read as new ones: `OrderPlaced` version 1, stored exactly as the engine wrote it
//! before the price breakdown, is upcast to the current version wherever events are read.

use std::time::Duration;

use commerce_domain::order::Order;
use commerce_domain::{OrderId, PaymentId};
use commerce_projections::read_models::Orders;
use commerce_projections::{apply_from_store, StoredEvent};
use commerce_store::repository::load_from_store;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{checkout_body, spawn_app, TestApp};

const ORDER_FIELDS: &[&str] = &[
    "buyer_id",
    "status",
    "lines",
    "subtotal",
    "discount",
    "shipping",
    "tax",
    "total",
    "promotion_code",
    "shipping_method_id",
    "shipping_address",
    "cancellation_reason",
];

fn eur(amount: i64) -> Value {
    json!({"amount": amount, "currency": "EUR"})
}

/// One order line as version 1 stored it.
fn line(sku: &str, product_id: Uuid, seller_id: Uuid, quantity: u32, price: i64) -> Value {
    json!({"sku": sku, "product_id": product_id, "seller_id": seller_id, "quantity": quantity,
           "unit_price": eur(price)})
}

impl TestApp {
    /// Appends an `OrderPlaced` of version 1 (the shape written before the price breakdown) for
    /// a new order, as the engine before the upgrade would have (its card token kept as the
    /// upgrade keeps it): the order id.
    async fn place_v1_order(&self, buyer_id: Uuid, lines: Vec<Value>) -> Uuid {
        let total: i64 = lines
            .iter()
            .map(|l| l["unit_price"]["amount"].as_i64().unwrap() * l["quantity"].as_i64().unwrap())
            .sum();
        let payload = json!({"OrderPlaced": {
            "buyer_id": buyer_id,
            "lines": lines,
            "total": eur(total),
            "shipping_address": checkout_body()["shipping_address"],
        }});
        let token = checkout_body()["payment_token"]
            .as_str()
            .unwrap()
            .to_owned();
        self.place_old_order("1.0", payload, &token).await
    }

    /// The order as GET /v1/orders/{id} shows it, once its saga confirmed it.
    async fn confirmed_order(&self, order_id: Uuid, buyer: &str) -> Value {
        self.wait_for_order(order_id, buyer, &["confirmed"]).await
    }

    /// Every row of `rm_orders`, in order.
    async fn orders_table(&self) -> Value {
        sqlx::query_scalar(
            "SELECT COALESCE(jsonb_agg(to_jsonb(o) ORDER BY o.order_id), '[]') FROM rm_orders o",
        )
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }
}

/// The fields a client compares, without ids and times.
fn comparable(order: &Value) -> Value {
    let mut fields: serde_json::Map<String, Value> = ORDER_FIELDS
        .iter()
        .map(|f| ((*f).to_owned(), order[*f].clone()))
        .collect();
    let statuses: Vec<Value> = order["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["status"].clone())
        .collect();
    fields.insert("timeline".into(), Value::Array(statuses));
    Value::Object(fields)
}

#[tokio::test]
async fn orders_placed_as_version_1_read_like_orders_placed_now() {
    let app = spawn_app().await;
    let (seller_id, seller) = app.account("seller").await;
    let mug = app.product(&seller, "MUG", 1250, 10).await;
    let tee = app.product(&seller, "TEE", 999, 10).await;
    let (buyer_id, buyer) = app.account("buyer").await;

    // Placed now, through the API: the current version.
    app.add_to_cart(&buyer, "MUG", 2).await;
    let current = app.checkout(&buyer).await;
    // Placed "before the upgrade": version 1, one of the same lines, one of other lines.
    let same = app
        .place_v1_order(buyer_id, vec![line("MUG", mug, seller_id, 2, 1250)])
        .await;
    let other = app
        .place_v1_order(
            buyer_id,
            vec![
                line("MUG", mug, seller_id, 1, 1250),
                line("TEE", tee, seller_id, 3, 999),
            ],
        )
        .await;
    let versions: Vec<(String, String)> = sqlx::query_as(
        "SELECT aggregate_id, event_version FROM events WHERE event_type = 'OrderPlaced' ORDER BY position",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        versions,
        vec![
            (
                current.to_string(),
                commerce_domain::upcast::current_version("order", "OrderPlaced")
            ),
            (same.to_string(), "1.0".to_owned()),
            (other.to_string(), "1.0".to_owned()),
        ]
    );

    // The saga reads every order through the store, so all three go the whole way.
    let current_view = app.confirmed_order(current, &buyer).await;
    let same_view = app.confirmed_order(same, &buyer).await;
    let other_view = app.confirmed_order(other, &buyer).await;

    // (a) The store loads a version 1 order into the same state as a current one.
    let loaded_current = load_from_store::<Order>(&app.pool, &current.to_string())
        .await
        .unwrap();
    let mut loaded_same = load_from_store::<Order>(&app.pool, &same.to_string())
        .await
        .unwrap()
        .state;
    assert_eq!(
        loaded_same.payment_id,
        Some(PaymentId::for_order(OrderId(same)))
    );
    loaded_same.payment_id = loaded_current.state.payment_id;
    // Placed before addresses were sealed, it holds its address in the clear; the API reads
    // both alike (below).
    assert!(matches!(
        loaded_same.shipping_address,
        Some(commerce_domain::privacy::Personal::Clear(_))
    ));
    loaded_same.shipping_address = loaded_current.state.shipping_address.clone();
    assert_eq!(loaded_same, loaded_current.state);
    let loaded_other = load_from_store::<Order>(&app.pool, &other.to_string())
        .await
        .unwrap()
        .state;
    let amount = |m: Option<commerce_domain::Money>| m.map(|m| m.amount);
    assert_eq!(
        (
            amount(loaded_other.subtotal),
            amount(loaded_other.discount),
            amount(loaded_other.shipping),
            amount(loaded_other.tax),
            amount(loaded_other.total)
        ),
        (Some(4247), Some(0), Some(0), Some(0), Some(4247))
    );

    // (b) GET /v1/orders/{id} shows the upcast fields exactly like a current order's.
    assert_eq!(comparable(&same_view), comparable(&current_view));
    for (view, amount) in [
        (&current_view, 2500),
        (&same_view, 2500),
        (&other_view, 4247),
    ] {
        assert_eq!(view["subtotal"], eur(amount), "{view}");
        assert_eq!(view["total"], eur(amount), "{view}");
        for field in ["discount", "shipping", "tax"] {
            assert_eq!(view[field], eur(0), "{field} of {view}");
        }
        assert_eq!(view["promotion_code"], Value::Null, "{view}");
        assert_eq!(view["shipping_method_id"], Value::Null, "{view}");
    }

    // (c) What the projection built from the relay's messages equals what it builds from the
    // store directly.
    let everything = app.last_position().await;
    let caught_up = commerce_projections::wait_for_position(
        &app.pool,
        &["orders"],
        everything,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert!(caught_up, "the orders projection did not catch up");
    let parked: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(parked, 0, "an event was parked");
    let via_relay = app.orders_table().await;
    assert_eq!(via_relay.as_array().unwrap().len(), 3);
    sqlx::query(
        "WITH forgotten AS (DELETE FROM projection_sequences WHERE projection = 'orders') \
         DELETE FROM rm_orders",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let replayed = apply_from_store(&app.pool, &Orders, 0).await.unwrap();
    assert_eq!(replayed.parked, 0);
    assert_eq!(app.orders_table().await, via_relay);
}

#[tokio::test]
async fn a_stored_event_and_a_dead_letter_of_version_1_come_back_at_the_current_version() {
    let app = spawn_app().await;
    let (buyer_id, buyer) = app.account("buyer").await;
    let (seller_id, _) = app.account("seller").await;
    let product_id = Uuid::now_v7();
    let v1 = json!({"OrderPlaced": {
        "buyer_id": buyer_id,
        "lines": [line("CUP", product_id, seller_id, 2, 300)],
        "total": eur(600),
        "payment_id": Uuid::now_v7(),
        "payment_token": "tok_ok",
        "shipping_address": checkout_body()["shipping_address"],
    }});
    let order_id = Uuid::now_v7();

    // Parked before the upgrade (by the orders projection), retried after it.
    let letter: i64 = sqlx::query_scalar(
        "INSERT INTO dead_letters (projection, aggregate_type, aggregate_id, sequence, position, \
                                   event_type, event_version, payload, metadata, recorded_at, error, attempts) \
         VALUES ('orders', 'order', $1, 1, 1, 'OrderPlaced', '1.0', $2, '{}', now(), 'parked before the upgrade', 1) \
         RETURNING id",
    )
    .bind(order_id.to_string())
    .bind(&v1)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let parked = commerce_projections::dead_letters::list_parked(&app.pool, Some("orders"))
        .await
        .unwrap();
    let event = parked[0].event().unwrap();
    assert_eq!(
        event.event_version,
        commerce_domain::upcast::current_version("order", "OrderPlaced")
    );
    assert_eq!(event.payload["OrderPlaced"]["subtotal"], eur(600));
    let outcome = commerce_projections::dead_letters::retry(&app.pool, &Orders, letter)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        commerce_projections::dead_letters::RetryOutcome::Applied
    );
    let order = app
        .read_json(&format!("/v1/orders/{order_id}"), Some(&buyer), 0)
        .await;
    assert_eq!(order["subtotal"], eur(600));
    assert_eq!(order["tax"], eur(0));
    assert_eq!(order["promotion_code"], Value::Null);

    // A version this engine does not know is an error that says so, not a panic.
    let row: Result<StoredEvent, sqlx::Error> = sqlx::query_as(
        "SELECT 'order' AS aggregate_type, 'x' AS aggregate_id, 1::bigint AS sequence, \
                1::bigint AS position, 'OrderPlaced' AS event_type, '99.0' AS event_version, \
                $1::jsonb AS payload, '{}'::jsonb AS metadata, now() AS recorded_at",
    )
    .bind(&v1)
    .fetch_one(&app.pool)
    .await;
    let error = row.unwrap_err().to_string();
    assert!(error.contains("newer than this engine reads"), "{error}");
    let row: StoredEvent = sqlx::query_as(
        "SELECT 'order' AS aggregate_type, 'x' AS aggregate_id, 1::bigint AS sequence, \
                1::bigint AS position, 'OrderPlaced' AS event_type, '1.0' AS event_version, \
                $1::jsonb AS payload, '{}'::jsonb AS metadata, now() AS recorded_at",
    )
    .bind(&v1)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        row.event_version,
        commerce_domain::upcast::current_version("order", "OrderPlaced")
    );
    assert_eq!(row.payload["OrderPlaced"]["discount"], eur(0));
}

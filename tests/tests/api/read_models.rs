//! Projections that apply a batch in a few set-based statements must build exactly the read
//! model that applying its events one at a time builds.

use std::time::Duration;

use commerce_projections::read_models::{Carts, InventoryLevels, Orders, Recommendations};
use commerce_projections::{Projection, StoredEvent};
use commerce_sagas::SagaTriggers;
use serde_json::Value;
use sqlx::{Connection, PgConnection};

use crate::helpers::{spawn_app, TestApp};

const TERMINAL: &[&str] = &["confirmed", "cancelled"];

/// The rows of `tables`, in a stable order.
async fn dump(conn: &mut PgConnection, tables: &[&str]) -> Vec<Value> {
    let mut rows = Vec::new();
    for table in tables {
        let query = format!(
            "SELECT COALESCE(jsonb_agg(to_jsonb(t) ORDER BY t::text), '[]') FROM {table} t"
        );
        rows.push(
            sqlx::query_scalar(&query)
                .fetch_one(&mut *conn)
                .await
                .unwrap(),
        );
    }
    rows
}

/// Every event `projection` follows, in commit order.
async fn followed_events(
    conn: &mut PgConnection,
    projection: &impl Projection,
) -> Vec<StoredEvent> {
    let types: Vec<&str> = projection.aggregate_types().to_vec();
    sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, sequence, position, event_type, event_version, \
                payload, metadata, recorded_at \
         FROM events WHERE aggregate_type = ANY($1) ORDER BY tx_id, position",
    )
    .bind(&types)
    .fetch_all(&mut *conn)
    .await
    .unwrap()
}

/// Rebuilds `tables` from the store inside a transaction that is rolled back, one event at a
/// time and then in one batch, and compares both with what the running engine built.
async fn assert_batch_equals_event_by_event(
    app: &TestApp,
    projection: impl Projection,
    tables: &[&str],
) {
    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();
    let live = dump(&mut conn, tables).await;
    assert!(
        live.iter().any(|rows| rows != &Value::Array(vec![])),
        "{} built nothing to compare",
        projection.name()
    );
    let events = followed_events(&mut conn, &projection).await;
    for one_by_one in [true, false] {
        let mut tx = conn.begin().await.unwrap();
        for table in tables {
            sqlx::query(&format!("DELETE FROM {table}"))
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        if one_by_one {
            for event in &events {
                projection.apply(&mut tx, event).await.unwrap();
            }
        } else {
            projection.apply_batch(&mut tx, &events).await.unwrap();
        }
        let rebuilt = dump(&mut tx, tables).await;
        tx.rollback().await.unwrap();
        let how = if one_by_one {
            "event by event"
        } else {
            "in one batch"
        };
        assert_eq!(rebuilt, live, "{} rebuilt {how}", projection.name());
    }
}

#[tokio::test]
async fn read_models_applied_in_batches_equal_those_applied_event_by_event() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    let (_, other_seller) = app.account("seller").await;
    app.product(&seller, "MUG", 1200, 10).await;
    app.product(&other_seller, "PEN", 300, 10).await;
    app.product(&seller, "CAP", 900, 1).await;

    // Carts changed several times, two lines from two sellers bought together twice, a declined
    // payment, the last unit of CAP raced for, and a cart left open.
    let (_, first) = app.account("buyer").await;
    app.add_to_cart(&first, "MUG", 1).await;
    app.add_to_cart(&first, "PEN", 4).await;
    app.add_to_cart(&first, "MUG", 2).await;
    let confirmed = app.checkout(&first).await;
    let (_, again) = app.account("buyer").await;
    app.add_to_cart(&again, "PEN", 1).await;
    app.add_to_cart(&again, "MUG", 1).await;
    let bought_again = app.checkout(&again).await;
    let (second, declined) = app.order_with("PEN", 1, "tok_decline").await;
    let (third, cap) = app.order_with("CAP", 1, "tok_ok").await;
    let (fourth, no_cap) = app.order_with("CAP", 1, "tok_ok").await;
    let (_, open) = app.account("buyer").await;
    app.add_to_cart(&open, "PEN", 2).await;
    app.add_to_cart(&open, "MUG", 1).await;
    app.add_to_cart(&open, "PEN", 1).await;
    for (order, buyer) in [
        (confirmed, &first),
        (bought_again, &again),
        (declined, &second),
        (cap, &third),
        (no_cap, &fourth),
    ] {
        app.wait_for_order(order, buyer, TERMINAL).await;
    }

    let everything = app.last_position().await;
    let names = [
        "carts",
        "orders",
        "inventory",
        "recommendations",
        "saga_triggers",
    ];
    let caught_up = commerce_projections::wait_for_position(
        &app.pool,
        &names,
        everything,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert!(caught_up, "the projections did not catch up");

    assert_batch_equals_event_by_event(&app, Carts, &["rm_carts"]).await;
    assert_batch_equals_event_by_event(&app, Orders, &["rm_orders"]).await;
    assert_batch_equals_event_by_event(&app, InventoryLevels, &["rm_inventory"]).await;
    let recommendations = [
        "rm_product_popularity",
        "rm_bought_together",
        "rm_buyer_products",
    ];
    assert_batch_equals_event_by_event(&app, Recommendations, &recommendations).await;
}

#[tokio::test]
async fn a_batch_with_two_wake_ups_of_one_saga_wakes_it_once_for_the_last() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 1200, 10).await;
    let (buyer, order) = app.order_with("MUG", 1, "tok_decline").await;
    app.wait_for_order(order, &buyer, &["cancelled"]).await;

    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();
    let order_events: Vec<StoredEvent> = followed_events(&mut conn, &SagaTriggers)
        .await
        .into_iter()
        .filter(|e| e.aggregate_id == order.to_string())
        .collect();
    let kinds: Vec<&str> = order_events.iter().map(|e| e.event_type.as_str()).collect();
    assert!(
        kinds.contains(&"OrderPlaced") && kinds.contains(&"OrderCancelled"),
        "{kinds:?}"
    );
    // Placed and cancelled in one batch: one statement must not touch the saga's row twice.
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("DELETE FROM saga_deadlines")
        .execute(&mut *tx)
        .await
        .unwrap();
    SagaTriggers
        .apply_batch(&mut tx, &order_events)
        .await
        .unwrap();
    let due: Vec<String> =
        sqlx::query_scalar("SELECT reason FROM saga_deadlines WHERE saga_id = $1")
            .bind(order)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(due, ["order_cancelled"]);
}

//! Online rebuilds: while commands keep arriving and reads keep being served, a rebuilt read
//! model ends identical to one built live, and no read fails or comes back empty meanwhile.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use commerce_projections::rebuild::{self, RebuildState};
use commerce_projections::{read_models, Namespace};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{spawn_app_with, TestApp};

/// Every row of a table, in a stable order, as JSON.
async fn rows(pool: &PgPool, table: &str, key: &str) -> Vec<Value> {
    sqlx::query_scalar(&format!("SELECT to_jsonb(t) FROM {table} t ORDER BY {key}"))
        .fetch_all(pool)
        .await
        .unwrap()
}

/// The rows of a table once the live projection has written `count` of them.
async fn settled_rows(pool: &PgPool, table: &str, key: &str, count: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let rows = rows(pool, table, key).await;
        if rows.len() >= count {
            return rows;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{table} has {} rows, not {count}",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn read_models(pool: &PgPool) -> (Vec<Value>, Vec<Value>) {
    (
        rows(pool, "rm_orders", "order_id").await,
        rows(pool, "rm_products", "product_id").await,
    )
}

/// Waits (60 s at most) for a rebuild to end; its final progress.
async fn wait_until_ended(pool: &PgPool, id: Uuid) -> rebuild::RebuildProgress {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let progress = rebuild::progress(pool, id).await.unwrap().unwrap();
        if progress.state.is_final() {
            return progress;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rebuild did not end: {progress:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A buyer who orders one unit of a SKU, again and again.
async fn order(app: &TestApp, buyer: &str, sku: &str) -> Uuid {
    app.add_to_cart(buyer, sku, 1).await;
    app.checkout(buyer).await
}

#[tokio::test]
async fn a_rebuild_under_load_ends_identical_to_the_read_models_built_live_and_reads_never_fail() {
    // Small batches: many checkpoints, and several of them meet the load.
    let app = Arc::new(spawn_app_with(|config| config.rebuild_batch = 5).await);
    let (_, seller) = app.account("seller").await;
    let mut products = Vec::new();
    for i in 0..4 {
        let sku = format!("RB-{i}");
        products.push((app.product(&seller, &sku, 1000 + i, 100_000).await, sku));
    }
    let (_, reader) = app.account("buyer").await;
    let first = order(&app, &reader, &products[0].1).await;
    let mut buyers = Vec::new();
    for _ in 0..3 {
        buyers.push(app.account("buyer").await.1);
    }
    for buyer in &buyers {
        for (_, sku) in &products {
            order(&app, buyer, sku).await;
        }
    }
    app.wait_for_event("order", &first.to_string(), "OrderConfirmed")
        .await;

    // The load: orders placed (their sagas go on), some cancelled, products renamed.
    let stop = Arc::new(AtomicBool::new(false));
    let placed = Arc::new(Mutex::new(vec![first]));
    let load = {
        let (app, stop, placed, seller) =
            (app.clone(), stop.clone(), placed.clone(), seller.clone());
        let (buyers, products) = (buyers.clone(), products.clone());
        tokio::spawn(async move {
            let mut round = 0_usize;
            while !stop.load(Ordering::Relaxed) {
                let buyer = &buyers[round % buyers.len()];
                let (product, sku) = &products[round % products.len()];
                let id = order(&app, buyer, sku).await;
                placed.lock().unwrap().push(id);
                if round.is_multiple_of(3) {
                    let response = app
                        .post(&format!("/v1/orders/{id}/cancel"), Some(buyer), json!({}))
                        .await;
                    assert!(
                        response.status().is_success() || response.status() == StatusCode::CONFLICT
                    );
                }
                let response = app
                    .request(
                        Method::PATCH,
                        &format!("/v1/products/{product}"),
                        Some(&seller),
                        Some(json!({"name": format!("Renamed {sku} {round}")})),
                    )
                    .await;
                assert_eq!(response.status(), StatusCode::OK);
                round += 1;
            }
        })
    };

    // The reads: each must answer 200 with the data it had before, at every phase.
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let reads_done = Arc::new(AtomicUsize::new(0));
    let reads = {
        let (app, stop, failures) = (app.clone(), stop.clone(), failures.clone());
        let reads_done = reads_done.clone();
        let reader = reader.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for path in [
                    format!("/v1/orders/{first}"),
                    "/v1/me/orders".to_owned(),
                    "/v1/products?limit=5".to_owned(),
                ] {
                    let response = app.request(Method::GET, &path, Some(&reader), None).await;
                    let status = response.status();
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    let empty = body
                        .get("items")
                        .is_some_and(|i| i.as_array().is_none_or(Vec::is_empty))
                        || (path.starts_with("/v1/orders/") && body["order_id"] != json!(first));
                    if status != StatusCode::OK || empty {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("GET {path}: {status} {body}"));
                    }
                    reads_done.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let projections = read_models::all();
    let orders = rebuild::start(&app.pool, &projections, "orders")
        .await
        .unwrap();
    let catalog = rebuild::start(&app.pool, &projections, "catalog")
        .await
        .unwrap();
    // Starting again while one runs is refused.
    assert!(matches!(
        rebuild::start(&app.pool, &projections, "orders").await,
        Err(rebuild::StartError::AlreadyRunning { rebuild_id, .. }) if rebuild_id == orders.rebuild_id
    ));
    let reads_before = reads_done.load(Ordering::Relaxed);
    let orders = wait_until_ended(&app.pool, orders.rebuild_id).await;
    let catalog = wait_until_ended(&app.pool, catalog.rebuild_id).await;
    let reads_during = reads_done.load(Ordering::Relaxed) - reads_before;
    // A little more load after the swap, applied by the live worker to the new tables.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    reads.await.unwrap();

    assert_eq!(orders.state, RebuildState::Completed, "{orders:?}");
    assert_eq!(catalog.state, RebuildState::Completed, "{catalog:?}");
    assert_eq!(orders.events_done, orders.events_total);
    assert!(orders.events_done > 0, "{orders:?}");
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "reads failed during the rebuild: {failures:#?}"
    );
    assert!(reads_during > 0, "no read ran while the rebuilds worked");

    // Settle: every saga done and applied, so that the read models stop changing.
    let placed = placed.lock().unwrap().clone();
    for id in &placed {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let status: Option<String> =
                sqlx::query_scalar("SELECT status FROM rm_orders WHERE order_id = $1")
                    .bind(id)
                    .fetch_optional(&app.pool)
                    .await
                    .unwrap();
            if matches!(status.as_deref(), Some("confirmed" | "cancelled")) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "order {id} stuck at {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rebuilt = read_models(&app.pool).await;
    assert!(!rebuilt.0.is_empty() && !rebuilt.1.is_empty());

    // The reference: the same read models built live, from the stream, by the live workers.
    sqlx::raw_sql(
        "TRUNCATE rm_orders, rm_products; \
         DELETE FROM projection_sequences WHERE projection IN ('orders', 'catalog')",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let namespace = Namespace::parse(&app.namespace).unwrap();
    let jetstream = async_nats::jetstream::new(async_nats::connect(&app.nats_url).await.unwrap());
    let stream = jetstream.get_stream(namespace.stream_name()).await.unwrap();
    for name in ["orders", "catalog"] {
        stream
            .delete_consumer(&namespace.consumer_name(name))
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let live = read_models(&app.pool).await;
        if live == rebuilt {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            let differing: Vec<_> = live
                .0
                .iter()
                .chain(&live.1)
                .filter(|row| !rebuilt.0.contains(row) && !rebuilt.1.contains(row))
                .take(3)
                .collect();
            panic!(
                "the live read models ({} orders, {} products) never matched the rebuilt ones \
                 ({} orders, {} products); e.g. {differing:#?}",
                live.0.len(),
                live.1.len(),
                rebuilt.0.len(),
                rebuilt.1.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_cancelled_rebuild_drops_its_shadow_tables_and_leaves_the_live_read_model_as_it_was() {
    let app = spawn_app_with(|config| config.rebuild_batch = 1).await;
    let (_, seller) = app.account("seller").await;
    for i in 0..5 {
        app.product(&seller, &format!("RC-{i}"), 100, 0).await;
    }
    let before = settled_rows(&app.pool, "rm_products", "product_id", 5).await;
    let holder = app.hold_rebuild("catalog").await;
    let projections = read_models::all();
    let started = rebuild::start(&app.pool, &projections, "catalog")
        .await
        .unwrap();
    assert_eq!(started.state, RebuildState::Pending);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while rebuild::progress(&app.pool, started.rebuild_id)
        .await
        .unwrap()
        .unwrap()
        .state
        != RebuildState::Bulk
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no runner took the rebuild up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancelled = rebuild::cancel(&app.pool, started.rebuild_id)
        .await
        .unwrap();
    assert!(cancelled.cancel_requested);
    assert_eq!(
        cancelled.state,
        RebuildState::Bulk,
        "a running rebuild ends at its next step"
    );
    holder.commit().await.unwrap();

    let ended = wait_until_ended(&app.pool, started.rebuild_id).await;
    assert_eq!(ended.state, RebuildState::Cancelled, "{ended:?}");
    assert!(ended.finished_at.is_some() && ended.eta_seconds.is_none());
    let shadow: bool = sqlx::query_scalar("SELECT to_regnamespace('rebuild_catalog') IS NOT NULL")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(!shadow, "the shadow schema was left behind");
    assert_eq!(rows(&app.pool, "rm_products", "product_id").await, before);
    assert!(matches!(
        rebuild::cancel(&app.pool, started.rebuild_id).await,
        Err(rebuild::CancelError::Ended(_))
    ));
    assert!(matches!(
        rebuild::cancel(&app.pool, Uuid::now_v7()).await,
        Err(rebuild::CancelError::NotFound(_))
    ));
    // The next one may start, and completes.
    let again = rebuild::start(&app.pool, &projections, "catalog")
        .await
        .unwrap();
    let again = wait_until_ended(&app.pool, again.rebuild_id).await;
    assert_eq!(again.state, RebuildState::Completed, "{again:?}");
    assert_eq!(rows(&app.pool, "rm_products", "product_id").await, before);
}

#[tokio::test]
async fn only_read_models_can_be_rebuilt() {
    let app = spawn_app_with(|_| {}).await;
    let projections: Vec<_> = read_models::all()
        .into_iter()
        .chain([commerce_projections::SharedProjection::new(
            commerce_sagas::SagaTriggers,
        )])
        .collect();
    assert!(matches!(
        rebuild::start(&app.pool, &projections, "no_such_projection").await,
        Err(rebuild::StartError::UnknownProjection(_))
    ));
    let trigger = commerce_projections::Projection::name(&commerce_sagas::SagaTriggers);
    assert!(matches!(
        rebuild::start(&app.pool, &projections, trigger).await,
        Err(rebuild::StartError::NotRebuildable(_))
    ));
}

#[tokio::test]
async fn every_read_model_rebuilds_to_the_rows_it_had() {
    let app = spawn_app_with(|config| config.rebuild_batch = 7).await;
    let (_, seller) = app.account("seller").await;
    let reviewed = app.product(&seller, "EVERY-1", 1200, 50).await;
    app.product(&seller, "EVERY-2", 800, 50).await;
    let (_, buyer) = app.account("buyer").await;
    // One order delivered and reviewed, one confirmed (cancelled after the rebuilds), a cart.
    app.add_to_cart(&buyer, "EVERY-1", 1).await;
    let delivered = app.checkout(&buyer).await;
    app.wait_for_event("order", &delivered.to_string(), "OrderConfirmed")
        .await;
    for (path, body) in [
        (
            "shipments",
            json!({"carrier": "DHL", "tracking_number": "JD0001"}),
        ),
        ("delivery", json!({})),
    ] {
        let response = app
            .post(
                &format!("/v1/orders/{delivered}/{path}"),
                Some(&seller),
                body,
            )
            .await;
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
    }
    let review = json!({"rating": 4, "title": "Good", "body": "A sturdy thing."});
    let response = app
        .post(
            &format!("/v1/products/{reviewed}/reviews"),
            Some(&buyer),
            review,
        )
        .await;
    assert!(
        response.status().is_success(),
        "review: {}",
        response.status()
    );
    app.add_to_cart(&buyer, "EVERY-1", 1).await;
    app.add_to_cart(&buyer, "EVERY-2", 2).await;
    let id = app.checkout(&buyer).await;
    app.wait_for_event("order", &id.to_string(), "OrderConfirmed")
        .await;
    app.add_to_cart(&buyer, "EVERY-1", 1).await;
    app.projections_settled().await;

    for projection in read_models::all() {
        let name = commerce_projections::Projection::name(&projection);
        let tables = commerce_projections::Projection::tables(&projection);
        // A bigserial id is handed out anew; everything else must be as it was.
        let dump = |pool: PgPool| async move {
            let mut all = Vec::new();
            for table in tables {
                let rows: Vec<Value> = sqlx::query_scalar(&format!(
                    "SELECT j FROM (SELECT to_jsonb(t) - 'notification_id' AS j FROM {table} t) s \
                     ORDER BY j::text"
                ))
                .fetch_all(&pool)
                .await
                .unwrap();
                all.push((table, rows));
            }
            all
        };
        let before = dump(app.pool.clone()).await;
        assert!(
            before.iter().any(|(_, rows)| !rows.is_empty()),
            "{name} has no rows to rebuild"
        );
        let started = rebuild::start(&app.pool, &read_models::all(), name)
            .await
            .unwrap();
        let ended = wait_until_ended(&app.pool, started.rebuild_id).await;
        assert_eq!(ended.state, RebuildState::Completed, "{ended:?}");
        let after = dump(app.pool.clone()).await;
        for ((table, old), (_, new)) in before.iter().zip(&after) {
            assert_eq!(new, old, "{name}: {table} changed");
        }
    }
    // The notifications' id sequence passed to the new table: new rows still get ids.
    app.post(&format!("/v1/orders/{id}/cancel"), Some(&buyer), json!({}))
        .await;
    app.wait_for_event("order", &id.to_string(), "OrderCancelled")
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let cancelled: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM rm_notifications WHERE order_id = $1 AND kind LIKE '%cancel%'",
        )
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if cancelled > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no notification after the rebuild"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

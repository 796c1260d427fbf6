//! Concurrent writers never lose an update, within one process or across two.

use commerce_domain::cart::Cart;
use commerce_domain::inventory::Inventory;
use commerce_store::repository::replay_from_events;
use commerce_store::Loaded;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn two_concurrent_writers_on_one_cart_lose_no_update() {
    let app = spawn_app().await;
    let replica = app.spawn_replica().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 100, 0).await;
    app.product(&seller, "TEE", 200, 0).await;
    let (buyer_id, buyer) = app.account("buyer").await;
    // Warm both processes' caches, so each decides on state the other may have moved past.
    app.add_to_cart(&buyer, "MUG", 1).await;
    replica.add_to_cart(&buyer, "TEE", 1).await;

    for round in 2..=6u32 {
        let (first, second) = tokio::join!(
            app.put(
                "/v1/me/cart/items/MUG",
                Some(&buyer),
                json!({"quantity": round})
            ),
            replica.put(
                "/v1/me/cart/items/TEE",
                Some(&buyer),
                json!({"quantity": round})
            ),
        );
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(second.status(), StatusCode::OK);
    }
    let Loaded {
        state: cart,
        version,
        ..
    } = replay_from_events::<Cart>(&app.pool, &buyer_id.to_string())
        .await
        .unwrap();
    let quantities: Vec<(String, u32)> = cart
        .lines
        .iter()
        .map(|(sku, line)| (sku.to_string(), line.quantity))
        .collect();
    assert_eq!(quantities, [("MUG".to_owned(), 6), ("TEE".to_owned(), 6)]);
    assert_eq!(version, 12);
}

#[tokio::test]
async fn twenty_concurrent_writers_on_one_sku_lose_no_update() {
    let app = spawn_app().await;
    let replica = app.spawn_replica().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "HOT", 100, 0).await;
    let restocks = (0..20).map(|i| {
        let target = if i % 2 == 0 { &app } else { &replica };
        let seller = seller.clone();
        async move {
            target
                .post(
                    "/v1/inventory/HOT/restock",
                    Some(&seller),
                    json!({"quantity": 1}),
                )
                .await
                .status()
        }
    });
    let statuses = futures::future::join_all(restocks).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    let Loaded {
        state: inventory,
        version,
        ..
    } = replay_from_events::<Inventory>(&app.pool, "HOT")
        .await
        .unwrap();
    assert_eq!(inventory.levels.on_hand, 20);
    assert_eq!(version, 20);
}

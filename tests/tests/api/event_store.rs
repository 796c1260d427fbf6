//! The event store itself: append-only, snapshots that equal replays, notifications, metadata.

use commerce_domain::inventory::{Inventory, InventoryCommand, InventoryError};
use commerce_domain::OrderId;
use commerce_store::repository::{
    load_from_store, replay_from_events, CommandOptions, Loaded, SNAPSHOT_EVERY,
};
use commerce_store::{CommandError, CommitError, Companion, Metadata, Repository};
use serde_json::{json, Value};
use sqlx::postgres::PgListener;
use uuid::Uuid;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_events_table_refuses_update_and_delete() {
    let app = spawn_app().await;
    app.account("buyer").await;
    let update = sqlx::query("UPDATE events SET payload = '{}'::jsonb")
        .execute(&app.pool)
        .await;
    assert!(update.unwrap_err().to_string().contains("append-only"));
    let delete = sqlx::query("DELETE FROM events").execute(&app.pool).await;
    assert!(delete.unwrap_err().to_string().contains("append-only"));
    let truncate = sqlx::query("TRUNCATE events").execute(&app.pool).await;
    assert!(truncate.is_err());
    assert!(app.event_count().await > 0);
}

#[tokio::test]
async fn a_snapshotted_aggregate_equals_a_replayed_one() {
    let app = spawn_app().await;
    let repository: Repository<Inventory> = Repository::new(app.pool.clone());
    let commands = 2 * SNAPSHOT_EVERY + 7;
    for i in 0..commands {
        let command = if i % 3 == 2 {
            InventoryCommand::Adjust {
                delta: -1,
                reason: "sample".into(),
            }
        } else {
            InventoryCommand::Restock { quantity: 2 }
        };
        repository
            .execute("SNAP", command, CommandOptions::new(Metadata::new(None)))
            .await
            .unwrap();
    }
    let (snapshot_version,): (i64,) = sqlx::query_as("SELECT last_sequence FROM snapshots WHERE aggregate_type = 'inventory' AND aggregate_id = 'SNAP'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(snapshot_version, 2 * SNAPSHOT_EVERY);

    let from_snapshot = load_from_store::<Inventory>(&app.pool, "SNAP")
        .await
        .unwrap();
    let Loaded {
        state: replayed,
        version,
        ..
    } = replay_from_events::<Inventory>(&app.pool, "SNAP")
        .await
        .unwrap();
    assert_eq!(from_snapshot.version, commands);
    assert_eq!(version, commands);
    assert_eq!(from_snapshot.state, replayed);
    let restocks = commands - commands / 3;
    assert_eq!(replayed.levels.on_hand, 2 * restocks - commands / 3);
}

#[tokio::test]
async fn a_snapshot_that_no_longer_reads_is_ignored_and_the_stream_replayed() {
    let app = spawn_app().await;
    let repository: Repository<Inventory> = Repository::new(app.pool.clone());
    let commands = SNAPSHOT_EVERY + 3;
    for _ in 0..commands {
        let command = InventoryCommand::Restock { quantity: 1 };
        repository
            .execute("OLD", command, CommandOptions::new(Metadata::new(None)))
            .await
            .unwrap();
    }
    // A snapshot of an older shape of the state.
    let changed = sqlx::query(
        "UPDATE snapshots SET payload = '{\"shape\": \"old\"}' WHERE aggregate_id = 'OLD'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(changed.rows_affected(), 1);

    let loaded = load_from_store::<Inventory>(&app.pool, "OLD")
        .await
        .unwrap();
    assert_eq!(loaded.version, commands);
    assert_eq!(loaded.state.levels.on_hand, commands);
}

#[tokio::test]
async fn concurrent_commands_on_one_aggregate_are_each_decided_on_the_state_the_previous_left() {
    let app = spawn_app().await;
    let repository: Repository<Inventory> = Repository::new(app.pool.clone());
    let plain = || CommandOptions::new(Metadata::new(None));
    repository
        .execute("HOT", InventoryCommand::Restock { quantity: 30 }, plain())
        .await
        .unwrap();
    // 50 reservations of one unit at once, and one of them sent twice: they queue up behind
    // each other's appends and are decided in groups.
    let orders: Vec<OrderId> = (0..50).map(|_| OrderId(Uuid::now_v7())).collect();
    let mut sent = orders.clone();
    sent.push(orders[0]);
    let attempts = sent.into_iter().map(|order_id| {
        let repository = repository.clone();
        tokio::spawn(async move {
            let metadata = Metadata::new(None);
            let correlation_id = metadata.correlation_id;
            let command = InventoryCommand::Reserve {
                order_id,
                quantity: 1,
            };
            let outcome = repository
                .execute("HOT", command, CommandOptions::new(metadata))
                .await;
            (correlation_id, outcome)
        })
    });
    let results = futures::future::join_all(attempts).await;

    let mut reserved = Vec::new();
    let mut refused = 0;
    for result in results {
        match result.unwrap() {
            (correlation_id, Ok(outcome)) if !outcome.events.is_empty() => {
                reserved.push((correlation_id, outcome.version, outcome.position.unwrap()));
            }
            // The repeat appends nothing; its answer points at the stream's last event.
            (_, Ok(outcome)) => assert!(outcome.position.is_some()),
            (_, Err(CommandError::Rejected(InventoryError::OutOfStock { .. }))) => refused += 1,
            (_, Err(other)) => panic!("unexpected outcome: {other}"),
        }
    }
    assert_eq!(reserved.len(), 30);
    assert_eq!(refused, 20);

    // Each reservation is its own event, at its own version and position, with its own metadata.
    let stored: Vec<(i64, i64, Uuid)> = sqlx::query_as(
        "SELECT sequence, position, (metadata->>'correlation_id')::uuid FROM events \
         WHERE aggregate_type = 'inventory' AND aggregate_id = 'HOT' AND event_type = 'Reserved' \
         ORDER BY sequence",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let mut expected: Vec<(i64, i64, Uuid)> = reserved
        .iter()
        .map(|(correlation_id, version, position)| (*version, *position, *correlation_id))
        .collect();
    expected.sort();
    assert_eq!(stored, expected);
    assert_eq!(stored.first().unwrap().0, 2);
    assert_eq!(stored.last().unwrap().0, 31);
    let Loaded { state, .. } = replay_from_events::<Inventory>(&app.pool, "HOT")
        .await
        .unwrap();
    assert_eq!((state.levels.on_hand, state.levels.reserved), (30, 30));
}

#[tokio::test]
async fn a_command_the_database_refuses_does_not_fail_the_others_of_its_group() {
    let app = spawn_app().await;
    let repository: Repository<Inventory> = Repository::new(app.pool.clone());
    // Postgres cannot store a NUL character in jsonb: this adjustment's append fails.
    let commands = (0..20)
        .map(|_| InventoryCommand::Restock { quantity: 1 })
        .chain([InventoryCommand::Adjust {
            delta: 5,
            reason: "found\u{0}".into(),
        }]);
    let attempts = commands.map(|command| {
        let repository = repository.clone();
        tokio::spawn(async move {
            let options = CommandOptions::new(Metadata::new(None));
            repository.execute("NUL", command, options).await
        })
    });
    let results = futures::future::join_all(attempts).await;
    let mut restocked = 0;
    let mut failed = 0;
    for result in results {
        match result.unwrap() {
            Ok(outcome) => {
                assert_eq!(outcome.events.len(), 1);
                restocked += 1;
            }
            Err(CommandError::Infrastructure(_)) => failed += 1,
            Err(other) => panic!("unexpected outcome: {other}"),
        }
    }
    assert_eq!((restocked, failed), (20, 1));
    let Loaded { state, version, .. } = replay_from_events::<Inventory>(&app.pool, "NUL")
        .await
        .unwrap();
    assert_eq!((state.levels.on_hand, version), (20, 20));
}

#[tokio::test]
async fn an_append_notifies_listeners() {
    let app = spawn_app().await;
    let mut listener = PgListener::connect_with(&app.pool).await.unwrap();
    listener.listen("events_appended").await.unwrap();
    app.account("buyer").await;
    let notification =
        tokio::time::timeout(std::time::Duration::from_secs(5), listener.recv()).await;
    assert!(notification.is_ok(), "no notification within 5 s");
}

#[tokio::test]
async fn events_carry_version_and_metadata_from_the_request() {
    let app = spawn_app().await;
    let (seller_id, seller) = app.account("seller").await;
    let request_id = uuid::Uuid::now_v7();
    let response = app
        .client
        .post(format!("{}/v1/products", app.address))
        .bearer_auth(&seller)
        .header("x-request-id", request_id.to_string())
        .header("idempotency-key", "create-tee")
        .json(&json!({"sku": "TEE", "name": "Tee", "price": {"amount": 1, "currency": "EUR"}, "category": "c"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["x-request-id"],
        request_id.to_string().as_str()
    );
    let (version, metadata, tx_id_set): (String, Value, bool) = sqlx::query_as(
        "SELECT event_version, metadata, tx_id IS NOT NULL FROM events WHERE event_type = 'ProductCreated'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(version, "1.0");
    assert!(tx_id_set);
    assert_eq!(metadata["correlation_id"], request_id.to_string());
    assert_eq!(metadata["causation_id"], request_id.to_string());
    assert_eq!(metadata["actor"], seller_id.to_string());
    assert_eq!(metadata["idempotency_key"], "create-tee");
}

fn plain() -> CommandOptions<Inventory> {
    CommandOptions::new(Metadata::new(None))
}

#[tokio::test]
async fn a_no_op_decided_on_another_process_s_old_news_is_decided_again_before_its_companion_commits(
) {
    let app = spawn_app().await;
    // Two processes: this one caches the SKU before the other reserves some of it.
    let here: Repository<Inventory> = Repository::new(app.pool.clone());
    let elsewhere: Repository<Inventory> = Repository::new(app.pool.clone());
    let order = OrderId::new();
    here.execute("STALE", InventoryCommand::Restock { quantity: 5 }, plain())
        .await
        .unwrap();
    elsewhere
        .execute(
            "STALE",
            InventoryCommand::Reserve {
                order_id: order,
                quantity: 2,
            },
            plain(),
        )
        .await
        .unwrap();
    // Releasing here, with a record written beside it: the cached state knows no reservation,
    // but the store does, and the release must take it back.
    let record = Companion::new(&here, "BESIDE", Metadata::new(None), |_, _| {
        Some(InventoryCommand::Restock { quantity: 1 })
    });
    let released = here
        .execute_with(
            "STALE",
            InventoryCommand::Release { order_id: order },
            plain(),
            Some(record),
        )
        .await
        .unwrap();
    assert_eq!(released.events.len(), 1, "{:?}", released.events);
    let Loaded { state, .. } = load_from_store::<Inventory>(&app.pool, "STALE")
        .await
        .unwrap();
    assert_eq!((state.levels.on_hand, state.levels.reserved), (5, 0));
    let beside = load_from_store::<Inventory>(&app.pool, "BESIDE")
        .await
        .unwrap();
    assert_eq!(beside.state.levels.on_hand, 1);
}

#[tokio::test]
async fn a_commit_whose_answer_was_lost_is_found_in_the_store_not_applied_twice() {
    let app = spawn_app().await;
    let repository: Repository<Inventory> = Repository::new(app.pool.clone());
    repository
        .execute("LOST", InventoryCommand::Restock { quantity: 5 }, plain())
        .await
        .unwrap();
    let metadata = serde_json::to_value(Metadata::new(None)).unwrap();
    let restock = commerce_store::unit_of_work::Append {
        aggregate_type: "inventory",
        aggregate_id: "LOST".into(),
        expected_version: 1,
        events: vec![(
            "Restocked".into(),
            commerce_domain::EVENT_VERSION.into(),
            json!({"Restocked": {"quantity": 3, "levels": {"on_hand": 8, "reserved": 0}}}),
        )],
        metadata,
    };
    let mut unit = commerce_store::UnitOfWork {
        appends: vec![restock],
        ..Default::default()
    };
    assert!(unit.landed(&app.pool).await.unwrap().is_none());
    let committed = unit.commit(&app.pool).await.unwrap();
    // As if the connection dropped before the answer came: the store says it landed.
    let found = unit.landed(&app.pool).await.unwrap().unwrap();
    assert_eq!(found.positions, committed.positions);
}

#[tokio::test]
async fn only_a_refusal_by_the_database_says_a_commit_did_not_land() {
    let app = spawn_app().await;
    let refused = sqlx::query("SELECT 1/0")
        .execute(&app.pool)
        .await
        .unwrap_err();
    let refused = anyhow::Error::new(refused).context("appending events");
    assert!(CommitError::refused_by_database(&refused));
    let cut_off = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
    let cut_off = anyhow::Error::new(sqlx::Error::Io(cut_off)).context("committing");
    assert!(!CommitError::refused_by_database(&cut_off));
    let never_sent = anyhow::Error::new(sqlx::Error::PoolTimedOut);
    assert!(CommitError::refused_by_database(&never_sent));
}

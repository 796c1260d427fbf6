//! The projection runtime: duplicates, gaps, poison events, replay from the store.

use std::sync::atomic::Ordering;
use std::time::Duration;

use commerce_projections::dead_letters::{self, RetryOutcome};
use commerce_projections::{apply_from_store, wait_for_position};
use serde_json::json;

use crate::helpers::{eventually, Counter, World};

/// A message delivered again after its event was applied, under another message id so that
/// JetStream cannot drop it, changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_delivered_again_after_commit_changes_nothing() {
    let world = World::new().await;
    let projection = world.spawn_projection(Counter::default());
    let relay = world.spawn_relay(world.relay("only"));
    let mut last = 0;
    for sequence in 1..=3 {
        last = world.append("order", "A", sequence).await;
    }
    assert!(world.caught_up(last).await);
    assert_eq!(world.count("order", "A").await, 3);

    let second = world.stored("order", "A").await.remove(1);
    world.publish(&second, Some("a-redelivery")).await;
    assert_eq!(world.stream_messages().await, 4);
    let consumer = world.namespace.consumer_name(Counter::NAME);
    eventually("the redelivered message is acked", || async {
        let stream = world
            .jetstream
            .get_stream(world.namespace.stream_name())
            .await
            .unwrap();
        let info = stream.consumer_info(&consumer).await.unwrap();
        info.ack_floor.stream_sequence == 4 && info.num_pending == 0 && info.num_ack_pending == 0
    })
    .await;

    assert_eq!(world.count("order", "A").await, 3);
    assert_eq!(world.applied().await.len(), 3);
    assert_eq!(world.dead_letter_count().await, 0);
    relay.stop().await;
    projection.stop().await;
}

/// Sequence 3 arrives when 1 is the last applied: 2 is read from the event store and applied
/// first, then 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_is_healed_from_the_event_store() {
    let world = World::new().await;
    let projection = world.spawn_projection(Counter::default());
    for sequence in 1..=3 {
        world.append("order", "A", sequence).await;
    }
    let stored = world.stored("order", "A").await;

    world.publish(&stored[0], None).await;
    eventually("the first event is applied", || async {
        world.count("order", "A").await == 1
    })
    .await;
    world.publish(&stored[2], None).await;
    eventually("the gap is healed", || async {
        world.count("order", "A").await == 3
    })
    .await;

    let applied = world.applied().await;
    let order: Vec<i64> = applied.iter().map(|(_, sequence)| *sequence).collect();
    assert_eq!(order, [1, 2, 3]);
    assert_eq!(world.dead_letter_count().await, 0);

    // Without a relay no checkpoint vouches for the stream: the watermark stays put.
    let waited = wait_for_position(
        &world.pool,
        &[Counter::NAME],
        stored[2].position,
        Duration::from_millis(100),
    )
    .await
    .unwrap();
    assert!(!waited);
    projection.stop().await;
}

/// An event that keeps failing is parked with its error; the projection goes on with later
/// events (of other aggregates and of its own), and an operator can retry it once fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_parked_and_later_events_still_apply() {
    let world = World::new().await;
    let counter = Counter::poisonable();
    let projection = world.spawn_projection(counter.clone());
    let relay = world.spawn_relay(world.relay("only"));

    world
        .append_with("order", "P", 1, json!({ "poison": true }))
        .await;
    world.append("order", "Q", 1).await;
    world.append("cart", "R", 1).await;
    world.append("order", "P", 2).await;
    world
        .append_with("cart", "S", 1, json!({ "poison": true }))
        .await;
    let last = world.append("order", "Q", 2).await;
    assert!(world.caught_up(last).await);

    assert_eq!(world.count("order", "Q").await, 2);
    assert_eq!(world.count("cart", "R").await, 1);
    assert_eq!(
        world.count("order", "P").await,
        1,
        "P's second event applied"
    );
    assert_eq!(world.count("cart", "S").await, 0);
    let parked = dead_letters::list_parked(&world.pool, Some(Counter::NAME))
        .await
        .unwrap();
    let parked: Vec<_> = parked
        .iter()
        .map(|l| (l.aggregate_id.as_str(), l.sequence, l.attempts))
        .collect();
    assert_eq!(parked, [("P", 1, 3), ("S", 1, 3)]);
    let letter = dead_letters::list_parked(&world.pool, None)
        .await
        .unwrap()
        .remove(1);
    assert!(
        letter.error.contains("poisoned event cart:S:1"),
        "{}",
        letter.error
    );
    assert_eq!(letter.payload, json!({ "poison": true }));

    // Still failing: it stays parked. Fixed: it applies.
    let again = dead_letters::retry(&world.pool, &counter, letter.id)
        .await
        .unwrap();
    assert!(matches!(again, RetryOutcome::Failed(_)), "{again:?}");
    counter.poison.store(false, Ordering::Release);
    let fixed = dead_letters::retry(&world.pool, &counter, letter.id)
        .await
        .unwrap();
    assert_eq!(fixed, RetryOutcome::Applied);
    assert_eq!(world.count("cart", "S").await, 1);
    let still_parked = dead_letters::list_parked(&world.pool, None).await.unwrap();
    assert_eq!(still_parked.len(), 1);
    assert_eq!(still_parked[0].aggregate_id, "P");
    assert_eq!(still_parked[0].attempts, 3);
    relay.stop().await;
    projection.stop().await;
}

/// Replaying from the event store applies what the projection lacks and skips what it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_from_the_store_applies_each_event_once() {
    let world = World::new().await;
    for sequence in 1..=4 {
        world.append("order", "A", sequence).await;
        world.append("cart", "B", sequence).await;
        world.append("payment", "C", sequence).await;
    }
    let counter = Counter::default();

    let first = apply_from_store(&world.pool, &counter, 0).await.unwrap();
    assert_eq!((first.applied, first.duplicates), (8, 0));
    let again = apply_from_store(&world.pool, &counter, 0).await.unwrap();
    assert_eq!((again.applied, again.duplicates), (0, 8));

    assert_eq!(world.count("order", "A").await, 4);
    assert_eq!(world.count("cart", "B").await, 4);
    assert_eq!(world.count("payment", "C").await, 0, "not followed");
    assert_eq!(world.dead_letter_count().await, 0);
}

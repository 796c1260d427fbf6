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

/// A lock timeout (Postgres's own 55P03) is transient: the batch is retried, with backoff and
/// without acking, for as long as the lock is held (many more times than the attempts after
/// which an event is parked), and the event applies once the lock is gone. Nothing is parked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_is_retried_until_it_applies_and_never_parked() {
    let world = World::new().await;
    let counter = Counter {
        gated: true,
        ..Counter::default()
    };
    // SHARE, not ACCESS EXCLUSIVE: that one takes a transaction id, which would hold back the
    // relay's horizon and so the very event under test.
    let mut gate = world.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE test_gate IN SHARE MODE")
        .execute(&mut *gate)
        .await
        .unwrap();
    let projection = world.spawn_projection(counter.clone());
    let relay = world.spawn_relay(world.relay("only"));
    let last = world.append("order", "A", 1).await;

    eventually("the projection keeps retrying", || async {
        counter.transient_failures.load(Ordering::Acquire) >= 8
    })
    .await;
    assert_eq!(world.count("order", "A").await, 0);
    assert_eq!(
        world.dead_letter_count().await,
        0,
        "a transient failure parked"
    );
    let state: (String, Option<String>) =
        sqlx::query_as("SELECT state, last_error FROM projection_positions WHERE name = $1")
            .bind(Counter::NAME)
            .fetch_one(&world.pool)
            .await
            .unwrap();
    assert_eq!(state.0, "failing");
    assert!(
        state
            .1
            .as_deref()
            .unwrap_or_default()
            .contains("lock timeout"),
        "{state:?}"
    );

    gate.commit().await.unwrap();
    assert!(world.caught_up(last).await);
    assert_eq!(world.count("order", "A").await, 1);
    assert_eq!(world.dead_letter_count().await, 0);
    relay.stop().await;
    projection.stop().await;
}

/// A failure that cannot heal (here Postgres refusing `1/0`) parks the event with its error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deterministic_failure_parks_the_event_with_its_error() {
    let world = World::new().await;
    let projection = world.spawn_projection(Counter::default());
    let relay = world.spawn_relay(world.relay("only"));
    world
        .append_with("order", "Z", 1, json!({ "divide_by_zero": true }))
        .await;
    let last = world.append("order", "Z", 2).await;
    assert!(world.caught_up(last).await);

    let parked = dead_letters::list_parked(&world.pool, None).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(
        (parked[0].aggregate_id.as_str(), parked[0].sequence),
        ("Z", 1)
    );
    assert!(
        parked[0].error.contains("division by zero"),
        "{}",
        parked[0].error
    );
    assert_eq!(world.count("order", "Z").await, 1, "the next event applied");
    assert_eq!(
        dead_letters::list_stuck_sagas(&world.pool).await.unwrap(),
        [],
        "the counter drives no saga"
    );
    relay.stop().await;
    projection.stop().await;
}

/// A parked event of a projection that drives sagas marks its saga stuck, in the same
/// transaction; a retry that applies it unmarks it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_event_of_a_saga_driving_projection_marks_its_saga_stuck() {
    let world = World::new().await;
    let counter = Counter {
        drives_sagas: true,
        ..Counter::poisonable()
    };
    let projection = world.spawn_projection(counter.clone());
    let relay = world.spawn_relay(world.relay("only"));
    let stranded = uuid::Uuid::new_v4();
    let fine = uuid::Uuid::new_v4();
    world
        .append_with("order", &stranded.to_string(), 1, json!({ "poison": true }))
        .await;
    let last = world.append("order", &fine.to_string(), 1).await;
    assert!(world.caught_up(last).await);

    let letter = dead_letters::list_parked(&world.pool, None)
        .await
        .unwrap()
        .remove(0);
    let stuck = dead_letters::list_stuck_sagas(&world.pool).await.unwrap();
    assert_eq!(stuck.len(), 1, "{stuck:?}");
    assert_eq!(stuck[0].saga_id, stranded);
    assert_eq!(stuck[0].projection, Counter::NAME);
    assert_eq!(stuck[0].dead_letter_id, letter.id);
    assert!(
        stuck[0].reason.contains("poisoned event"),
        "{}",
        stuck[0].reason
    );

    counter.poison.store(false, Ordering::Release);
    let retried = dead_letters::retry(&world.pool, &counter, letter.id)
        .await
        .unwrap();
    assert_eq!(retried, RetryOutcome::Applied);
    assert_eq!(
        dead_letters::list_stuck_sagas(&world.pool).await.unwrap(),
        []
    );
    relay.stop().await;
    projection.stop().await;
}

//! The relay: commit order without gaps, crash safety, one active instance.

use std::time::Duration;

use crate::helpers::{append_on, eventually, Counter, NatsServer, World, PATIENCE};
use async_nats::jetstream::stream;
use commerce_projections::relay::checkpoint;
use serde_json::json;

/// Transaction A takes a position, B takes the next one and commits first: the relay must hold
/// B back until A commits (else a reader trusting positions would skip A forever), then publish
/// both, A first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_holds_back_younger_ones_and_nothing_is_skipped() {
    let world = World::new().await;
    let relay = world.relay("gap");
    let mut active = relay
        .try_activate()
        .await
        .unwrap()
        .expect("the lock is free");

    let mut a = world.pool.begin().await.unwrap();
    let position_a = append_on(&mut a, "order", "A", 1, json!({})).await;
    let mut b = world.pool.begin().await.unwrap();
    let position_b = append_on(&mut b, "order", "B", 1, json!({})).await;
    assert!(position_b > position_a);
    b.commit().await.unwrap();

    // B is committed and visible, but A is still open and older: nothing may be published.
    let published = active.publish_next().await.unwrap();
    active.store_checkpoint(&published).await.unwrap();
    assert_eq!(published.events, 0);
    assert!(published.waiting_since.is_some(), "B waits behind A");
    assert_eq!(world.stream_messages().await, 0);
    let stored = checkpoint::load(&world.pool, &world.namespace)
        .await
        .unwrap();
    assert_eq!((stored.tx_id, stored.position), (0, 0));

    a.commit().await.unwrap();
    active.release().await.unwrap();

    // The running relay now publishes both, in transaction order, and skips neither.
    let running = world.spawn_relay(world.relay("gap"));
    eventually("both events are published", || async {
        world.stream_messages().await == 2
    })
    .await;
    assert_eq!(world.stream_message_ids().await, ["order:A:1", "order:B:1"]);
    eventually("the checkpoint is stored", || async {
        let stored = checkpoint::load(&world.pool, &world.namespace)
            .await
            .unwrap();
        stored.position == position_b
    })
    .await;
    let stored = checkpoint::load(&world.pool, &world.namespace)
        .await
        .unwrap();
    assert_eq!(stored.published_position, position_b);
    assert_eq!(stored.stream_sequence, 2);
    running.stop().await;
}

/// A relay that dies after JetStream acknowledged a batch and before it stored the checkpoint
/// republishes that batch: every event reaches the projection, none is applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_between_publish_and_checkpoint_loses_and_doubles_nothing() {
    let world = World::new().await;
    let projection = world.spawn_projection(Counter::default());
    for sequence in 1..=3 {
        world.append("order", "A", sequence).await;
        world.append("cart", "B", sequence).await;
    }

    // Publish without checkpointing, then die (dropping closes the lock connection).
    let relay = world.relay("doomed");
    let mut active = relay
        .try_activate()
        .await
        .unwrap()
        .expect("the lock is free");
    // Without a stored checkpoint every call reads from the start again; wait until one call
    // sees all six (another database's open transaction may hold the horizon back a moment).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while active.publish_next().await.unwrap().events < 6 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the batch was not published"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    drop(active);
    assert_eq!(
        checkpoint::load(&world.pool, &world.namespace)
            .await
            .unwrap(),
        checkpoint::Checkpoint::default(),
        "the checkpoint was never stored"
    );
    eventually("the projection applies the first batch", || async {
        world.count("order", "A").await == 3 && world.count("cart", "B").await == 3
    })
    .await;

    // The next relay starts from the old checkpoint and republishes the batch.
    let relay = world.spawn_relay(world.relay("successor"));
    let mut last = 0;
    for sequence in 4..=5 {
        world.append("order", "A", sequence).await;
        last = world.append("cart", "B", sequence).await;
    }
    assert!(world.caught_up(last).await);

    assert_eq!(world.count("order", "A").await, 5);
    assert_eq!(world.count("cart", "B").await, 5);
    assert_eq!(world.applied().await.len(), 10);
    assert_eq!(world.dead_letter_count().await, 0);
    assert_eq!(
        world.stream_messages().await,
        10,
        "JetStream dropped the republished batch as duplicates"
    );
    relay.stop().await;
    projection.stop().await;
}

/// Two relays: one publishes, the other stands by; when the active one stops, or its
/// connection dies, a standby takes over without losing an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_relay_publishes_and_a_standby_takes_over() {
    let world = World::new().await;
    let projection = world.spawn_projection(Counter::default());

    let first = world.relay("first");
    let first_status = first.status();
    let first = world.spawn_relay(first);
    eventually("the first relay is active", || async {
        first_status.is_active()
    })
    .await;
    let second = world.relay("second");
    let second_status = second.status();
    let second = world.spawn_relay(second);
    eventually(
        "the second relay stands by on its own connection",
        || async { lock_connection_exists(&world, "second").await },
    )
    .await;

    let mut last = 0;
    for sequence in 1..=10 {
        last = world.append("order", "A", sequence).await;
    }
    assert!(world.caught_up(last).await);
    assert_eq!(first_status.published(), 10);
    assert_eq!(second_status.published(), 0);
    assert!(!second_status.is_active());

    // The active relay stops: the standby takes over from its checkpoint.
    first.stop().await;
    eventually("the second relay takes over", || async {
        second_status.is_active()
    })
    .await;
    for sequence in 11..=20 {
        last = world.append("order", "A", sequence).await;
    }
    assert!(world.caught_up(last).await);
    assert_eq!(second_status.published(), 10);

    // The active relay's connection dies: a new standby (or the old relay, once it is back)
    // takes over.
    let third = world.spawn_relay(world.relay("third"));
    eventually("the third relay stands by", || async {
        lock_connection_exists(&world, "third").await
    })
    .await;
    let killed: bool = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(format!("commerce-relay {} second", world.namespace))
    .fetch_one(&world.pool)
    .await
    .unwrap();
    assert!(killed);
    for sequence in 21..=30 {
        last = world.append("order", "A", sequence).await;
    }
    assert!(world.caught_up(last).await);

    assert_eq!(world.count("order", "A").await, 30);
    assert_eq!(world.stream_messages().await, 30);
    assert_eq!(
        world.stream_message_ids().await,
        (1..=30).map(|s| format!("order:A:{s}")).collect::<Vec<_>>()
    );
    assert_eq!(world.dead_letter_count().await, 0);
    second.stop().await;
    third.stop().await;
    projection.stop().await;
}

async fn lock_connection_exists(world: &World, instance: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = $1)")
        .bind(format!("commerce-relay {} {instance}", world.namespace))
        .fetch_one(&world.pool)
        .await
        .unwrap()
}

/// The stream is deleted and created again behind the relay's back, once while the projection
/// is stopped (so events only the lost stream held were never applied) and once while it runs
/// (so its consumer vanishes). Every event still reaches the projection, and at no point does
/// its watermark cover an event it has not applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_stream_is_republished_and_the_watermark_never_runs_ahead() {
    let world = World::new().await;
    let relay = world.spawn_relay(world.relay("only"));
    let projection = world.spawn_projection(Counter::default());
    let mut last = 0;
    for sequence in 1..=3 {
        last = world.append("order", "A", sequence).await;
    }
    world.caught_up_honestly(last).await;

    // C's only event is published while the projection is stopped, then lost with the stream.
    projection.stop().await;
    world.append("order", "C", 1).await;
    eventually("C is published", || async {
        world.stream_messages().await == 4
    })
    .await;
    world
        .jetstream
        .delete_stream(world.namespace.stream_name())
        .await
        .unwrap();
    commerce_projections::stream::ensure(&world.jetstream, &world.namespace, 1)
        .await
        .unwrap();
    last = world.append("order", "A", 4).await;
    let projection = world.spawn_projection(Counter::default());
    world.caught_up_honestly(last).await;
    assert_eq!(world.count("order", "C").await, 1, "C was republished");
    assert_eq!(world.count("order", "A").await, 4);

    // Deleted under a running projection: its consumer goes with it and is created again.
    world
        .jetstream
        .delete_stream(world.namespace.stream_name())
        .await
        .unwrap();
    world.append("order", "A", 5).await;
    last = world.append("cart", "B", 1).await;
    world.caught_up_honestly(last).await;
    assert_eq!(world.count("order", "A").await, 5);
    assert_eq!(world.count("cart", "B").await, 1);
    assert_eq!(world.count("order", "C").await, 1);
    assert_eq!(world.dead_letter_count().await, 0);
    let stored = checkpoint::load(&world.pool, &world.namespace)
        .await
        .unwrap();
    let mut stream = world
        .jetstream
        .get_stream(world.namespace.stream_name())
        .await
        .unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(
        stored.stream_created,
        Some(commerce_projections::stream::identity(info).unwrap()),
        "the checkpoint speaks of the stream that exists"
    );
    relay.stop().await;
    projection.stop().await;
}

/// An event larger than the server's `max_payload` cannot be published, ever: the relay parks
/// it with the reason and publishes the events after it instead of stalling on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_too_large_for_the_bus_is_parked_and_the_relay_moves_on() {
    let nats = NatsServer::start("max_payload: 8192\n").await;
    let world = World::on_nats(&nats.url).await;
    world.append("order", "X", 1).await;
    let big = world
        .append_with("order", "Big", 1, json!({ "blob": "x".repeat(16 * 1024) }))
        .await;
    let last = world.append("order", "Y", 1).await;
    let relay = world.spawn_relay(world.relay("only"));

    eventually("the events around the big one are published", || async {
        world.stream_messages().await == 2
    })
    .await;
    assert_eq!(world.stream_message_ids().await, ["order:X:1", "order:Y:1"]);
    // The parked record is written with the checkpoint, once the batch's publishes were acked.
    eventually("the big one is parked", || async {
        let parked: i64 =
            sqlx::query_scalar("SELECT count(*) FROM relay_parked_events WHERE namespace = $1")
                .bind(world.namespace.as_str())
                .fetch_one(&world.pool)
                .await
                .unwrap();
        parked > 0
    })
    .await;
    let parked: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT position, aggregate_id, reason FROM relay_parked_events WHERE namespace = $1",
    )
    .bind(world.namespace.as_str())
    .fetch_all(&world.pool)
    .await
    .unwrap();
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!((parked[0].0, parked[0].1.as_str()), (big, "Big"));
    assert!(parked[0].2.contains("8192"), "{}", parked[0].2);
    eventually("the checkpoint moves past it", || async {
        checkpoint::load(&world.pool, &world.namespace)
            .await
            .unwrap()
            .published_position
            >= last
    })
    .await;
    relay.stop().await;
}

/// The stream keeps messages `COMMERCE_STREAM_MAX_AGE`: the relay sets that retention on a
/// stream that already exists, and messages dropped by age (even all of them, and across a
/// restart of NATS) are not taken for a shortened stream: nothing is republished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_dropped_by_age_are_not_taken_for_a_shortened_stream() {
    let mut nats = NatsServer::start("").await;
    let world = World::on_nats(&nats.url).await;
    // Created as a projection worker creates it, with the default retention.
    let created = commerce_projections::stream::ensure(&world.jetstream, &world.namespace, 1)
        .await
        .unwrap();
    assert_eq!(
        created.config.max_age,
        commerce_projections::stream::DEFAULT_MAX_AGE
    );
    let max_age = Duration::from_secs(1);
    let relay = world.relay_with("aging", |config| config.stream_max_age = max_age);
    for sequence in 1..=3 {
        world.append("order", "A", sequence).await;
    }
    let running = world.spawn_relay(relay);
    eventually("the events are published", || async {
        stream_state(&world).await.1.last_sequence == 3
    })
    .await;
    let (config, _) = stream_state(&world).await;
    assert_eq!(config.max_age, max_age, "the relay set its retention");

    eventually("the messages are dropped by age", || async {
        stream_state(&world).await.1.messages == 0
    })
    .await;
    nats.restart().await;
    let last = world.append("order", "A", 4).await;
    eventually("the new event is published", || async {
        checkpoint::load(&world.pool, &world.namespace)
            .await
            .unwrap()
            .published_position
            == last
    })
    .await;
    let (_, state) = stream_state(&world).await;
    assert_eq!(state.last_sequence, 4, "nothing was republished");
    let stored = checkpoint::load(&world.pool, &world.namespace)
        .await
        .unwrap();
    assert_eq!(stored.stream_sequence, 4);
    assert_eq!(
        stored.stream_created,
        Some(commerce_projections::stream::identity(&created).unwrap()),
        "the same stream"
    );
    running.stop().await;
}

/// The stream's configuration and state, as the server sees them now.
async fn stream_state(world: &World) -> (stream::Config, stream::State) {
    let info = commerce_projections::stream::look_up_info(&world.jetstream, &world.namespace)
        .await
        .unwrap();
    (info.config, info.state)
}

//! A projection run as two partitions by two runtimes (as two processes would): each applies
//! its own aggregates, in order, once; the projection's watermark waits for both.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use commerce_projections::{wait_for_position, Partition, Partitioning};
use futures::StreamExt;

use crate::helpers::{Counter, World};

const AGGREGATES: usize = 24;
const EVENTS_EACH: i64 = 4;

/// Appends `EVENTS_EACH` events to each of `AGGREGATES` orders, interleaved, from sequence
/// `first`; returns the last position.
async fn append_round(world: &World, first: i64) -> i64 {
    let mut last = 0;
    for sequence in first..first + EVENTS_EACH {
        for aggregate in 0..AGGREGATES {
            last = world
                .append("order", &format!("order-{aggregate}"), sequence)
                .await;
        }
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_partitions_on_two_runtimes_build_the_read_model_one_would_and_share_the_watermark() {
    let world = World::new().await;
    let relay = world.spawn_relay(world.relay("only"));
    let first = world.spawn_partitions(
        Counter::default(),
        Partitioning::parse("counter=2:0").unwrap(),
    );

    // Partition 1 does not run yet: its aggregates wait, and the projection's watermark with
    // them, however far partition 0 gets.
    let last = append_round(&world, 1).await;
    let zero = Partition::new(0, 2).unwrap();
    let (mine, theirs): (Vec<usize>, Vec<usize>) =
        (0..AGGREGATES).partition(|a| zero.owns(&format!("order-{a}")));
    assert!(
        !mine.is_empty() && !theirs.is_empty(),
        "both partitions have aggregates"
    );
    crate::helpers::eventually("partition 0 applies its aggregates", || async {
        let mut all = true;
        for aggregate in &mine {
            all &= world.count("order", &format!("order-{aggregate}")).await == EVENTS_EACH;
        }
        all
    })
    .await;
    for aggregate in &theirs {
        assert_eq!(world.count("order", &format!("order-{aggregate}")).await, 0);
    }
    assert!(
        !wait_for_position(
            &world.pool,
            &[Counter::NAME],
            last,
            Duration::from_millis(500)
        )
        .await
        .unwrap(),
        "the watermark passed events partition 1 has not applied"
    );

    let second = world.spawn_partitions(
        Counter::default(),
        Partitioning::parse("counter=2:1").unwrap(),
    );
    world.caught_up_honestly(last).await;
    let last = append_round(&world, EVENTS_EACH + 1).await;
    world.caught_up_honestly(last).await;

    // Every aggregate whole, each event applied once and in order: what one worker builds.
    for aggregate in 0..AGGREGATES {
        assert_eq!(
            world.count("order", &format!("order-{aggregate}")).await,
            2 * EVENTS_EACH
        );
    }
    let mut sequences: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (aggregate, sequence) in world.applied().await {
        sequences.entry(aggregate).or_default().push(sequence);
    }
    let in_order: Vec<i64> = (1..=2 * EVENTS_EACH).collect();
    assert!(
        sequences.values().all(|applied| *applied == in_order),
        "{sequences:?}"
    );
    assert_eq!(world.dead_letter_count().await, 0);

    // Two durable consumers, one per partition, each through the whole stream.
    let stream = world
        .jetstream
        .get_stream(world.namespace.stream_name())
        .await
        .unwrap();
    for index in 0..2 {
        let name = Partition::new(index, 2)
            .unwrap()
            .consumer_name(&world.namespace, Counter::NAME);
        let info = stream.consumer_info(&name).await.unwrap();
        assert_eq!(info.num_pending, 0, "{name}");
    }
    assert!(
        stream
            .consumer_info(world.namespace.consumer_name(Counter::NAME))
            .await
            .is_err(),
        "no unpartitioned consumer"
    );
    first.stop().await;
    second.stop().await;
    relay.stop().await;
}

/// Going from one consumer to two partitions and back: each new set of consumers starts where
/// the old set had got to, not at the stream's beginning, the old consumers are deleted once
/// the new set is complete, and nothing is applied twice or missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_partition_count_starts_the_new_consumers_where_the_old_ones_got_to() {
    let world = World::new().await;
    let relay = world.spawn_relay(world.relay("only"));
    let whole = world.namespace.consumer_name(Counter::NAME);
    let halves: Vec<String> = (0..2)
        .map(|i| {
            Partition::new(i, 2)
                .unwrap()
                .consumer_name(&world.namespace, Counter::NAME)
        })
        .collect();

    let one = world.spawn_projection(Counter::default());
    let last = append_round(&world, 1).await;
    world.caught_up_honestly(last).await;
    one.stop().await;
    let stream = world
        .jetstream
        .get_stream(world.namespace.stream_name())
        .await
        .unwrap();
    let consumer_names = || async {
        let mut names: Vec<String> = stream
            .consumer_names()
            .map(|name| name.unwrap())
            .collect()
            .await;
        names.sort();
        names
    };
    let floor = stream
        .consumer_info(&whole)
        .await
        .unwrap()
        .ack_floor
        .stream_sequence;
    assert!(floor > 0);

    let two = world.spawn_partitions(
        Counter::default(),
        Partitioning::parse("counter=2").unwrap(),
    );
    let last = append_round(&world, EVENTS_EACH + 1).await;
    world.caught_up_honestly(last).await;
    crate::helpers::eventually("the unpartitioned consumer is retired", || async {
        consumer_names().await == halves
    })
    .await;
    for name in &halves {
        let info = stream.consumer_info(name).await.unwrap();
        assert_eq!(
            info.config.deliver_policy,
            DeliverPolicy::ByStartSequence {
                start_sequence: floor + 1
            },
            "{name}"
        );
    }
    two.stop().await;

    let one_again = world.spawn_projection(Counter::default());
    let last = append_round(&world, 2 * EVENTS_EACH + 1).await;
    world.caught_up_honestly(last).await;
    crate::helpers::eventually("the partitions' consumers are retired", || async {
        consumer_names().await == [whole.clone()]
    })
    .await;
    let watermarks: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_partitions")
        .fetch_one(&world.pool)
        .await
        .unwrap();
    assert_eq!(
        watermarks, 0,
        "the partitions' watermarks are retired with them"
    );
    let info = stream.consumer_info(&whole).await.unwrap();
    assert!(
        matches!(info.config.deliver_policy, DeliverPolicy::ByStartSequence { start_sequence } if start_sequence > floor + 1),
        "{:?}",
        info.config.deliver_policy
    );

    for aggregate in 0..AGGREGATES {
        assert_eq!(
            world.count("order", &format!("order-{aggregate}")).await,
            3 * EVENTS_EACH
        );
    }
    assert_eq!(
        world.applied().await.len(),
        AGGREGATES * 3 * EVENTS_EACH as usize
    );
    assert_eq!(world.dead_letter_count().await, 0);
    one_again.stop().await;
    relay.stop().await;
}

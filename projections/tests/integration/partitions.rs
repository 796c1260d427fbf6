//! A projection run as two partitions by two runtimes (as two processes would): each applies
//! its own aggregates, in order, once; the projection's watermark waits for both.

use std::collections::BTreeMap;
use std::time::Duration;

use commerce_projections::{wait_for_position, Partition, Partitioning};

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

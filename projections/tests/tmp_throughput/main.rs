#![allow(clippy::unwrap_used, clippy::expect_used)]
mod helpers;
use helpers::{Counter, World};
use std::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput() {
    let world = World::new().await;
    let n = 20_000i64;
    let t = Instant::now();
    sqlx::query("INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
        SELECT 'order', (i % 2000)::text, (i / 2000) + 1, 'TestHappened', '1', '{\"a\":1}', '{\"correlation_id\":\"x\",\"causation_id\":\"y\"}' FROM generate_series(0, $1 - 1) i")
        .bind(n).execute(&world.pool).await.unwrap();
    let last: i64 = sqlx::query_scalar("SELECT max(position) FROM events")
        .fetch_one(&world.pool)
        .await
        .unwrap();
    println!("inserted in {:?}", t.elapsed());
    let t = Instant::now();
    let relay = world.spawn_relay(world.relay("bench"));
    helpers::eventually("published", || async {
        world.stream_messages().await == n as u64
    })
    .await;
    println!("relay published {n} in {:?}", t.elapsed());
    let t = Instant::now();
    let projection = world.spawn_projection(Counter::default());
    assert!(world.caught_up(last).await);
    println!("projection applied {n} in {:?}", t.elapsed());
    relay.stop().await;
    projection.stop().await;
}

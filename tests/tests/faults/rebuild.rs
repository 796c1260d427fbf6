//! A rebuild killed half-way (`kill -9` of every process that runs rebuilds) resumes from its
//! checkpoint in the next process and ends with the same read model as the one built live.

use std::time::{Duration, Instant};

use commerce_projections::read_models;
use commerce_projections::rebuild::{self, RebuildState};
use serde_json::Value;
use sqlx::PgPool;

use crate::client::Api;
use crate::cluster::Cluster;

const PRODUCTS: i64 = 60;

async fn products(pool: &PgPool) -> Vec<Value> {
    sqlx::query_scalar("SELECT to_jsonb(p) FROM rm_products p ORDER BY product_id")
        .fetch_all(pool)
        .await
        .expect("reading rm_products")
}

async fn progress(pool: &PgPool, id: uuid::Uuid) -> rebuild::RebuildProgress {
    rebuild::progress(pool, id)
        .await
        .expect("reading the rebuild")
        .expect("the rebuild exists")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_killed_half_way_resumes_from_its_checkpoint_and_ends_identical() {
    // One event per batch: a checkpoint after each.
    let mut cluster = Cluster::start_with(&[("COMMERCE_REBUILD_BATCH", "1")]).await;
    let pool = cluster.pool().await;
    let api = Api::new(cluster.command_url.clone(), cluster.query_url.clone());
    let (_, seller) = api.account("seller").await;
    for i in 0..PRODUCTS {
        api.product(&seller, &format!("RS-{i}"), 100 + i).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let live = loop {
        let rows = products(&pool).await;
        if rows.len() as i64 == PRODUCTS {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "the live catalog has {} products",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let started = rebuild::start(&pool, &read_models::all(), "catalog")
        .await
        .expect("the rebuild starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while progress(&pool, started.rebuild_id).await.events_done < PRODUCTS / 4 {
        assert!(Instant::now() < deadline, "the rebuild made no progress");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Stop it where it is: its next read of the store waits for this lock.
    let mut freeze = pool.begin().await.expect("a transaction");
    sqlx::query("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *freeze)
        .await
        .expect("locking the store");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before_kill = progress(&pool, started.rebuild_id).await;
    assert!(
        before_kill.events_done < PRODUCTS && before_kill.state == RebuildState::Bulk,
        "not half-way: {before_kill:?}"
    );
    cluster.kill9("projections-1");
    cluster.kill9("projections-2");
    freeze.rollback().await.expect("unlocking the store");

    // Nothing works on it now; the checkpoint stays.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let checkpoint = progress(&pool, started.rebuild_id).await;
    assert!(checkpoint.events_done >= before_kill.events_done);
    assert!(checkpoint.events_done < PRODUCTS, "{checkpoint:?}");

    cluster.start_process("projections-1").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let ended = loop {
        let now = progress(&pool, started.rebuild_id).await;
        assert!(
            now.events_done >= checkpoint.events_done,
            "it started over: {now:?} after {checkpoint:?}"
        );
        if now.state.is_final() {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "the resumed rebuild did not end: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(ended.state, RebuildState::Completed, "{ended:?}");
    assert_eq!(ended.resumes, 1, "{ended:?}");
    // Each event applied once: a rebuild that started over would have counted the first part
    // twice, and parked its duplicates.
    assert_eq!(
        (ended.events_done, ended.events_parked),
        (PRODUCTS, 0),
        "{ended:?}"
    );
    assert_eq!(products(&pool).await, live);
}

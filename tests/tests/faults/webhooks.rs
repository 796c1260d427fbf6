//! Webhook deliveries through `kill -9`: every process that fans events out and delivers them
//! is killed while receivers hold requests open, then restarted. Every event still reaches the
//! receiver (at least once), and a receiver deduplicating by `webhook-id` never sees one event
//! under two ids, nor two events under one.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::client::{Answer, Api};
use crate::cluster::Cluster;
use crate::receiver::{verify, Receiver};

const SKUS: usize = 4;
const RESTOCKS: usize = 40;
/// The processes that run the fan-out and the delivery workers.
const DELIVERING: [&str; 2] = ["projections-1", "projections-2"];

/// `(aggregate_type, aggregate_id, sequence)` of the inventory and product events recorded
/// since `since_position`.
async fn expected(pool: &PgPool, since_position: i64) -> BTreeSet<(String, String, i64)> {
    sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, sequence FROM events \
         WHERE aggregate_type IN ('inventory', 'product') AND position > $1",
    )
    .bind(since_position)
    .fetch_all(pool)
    .await
    .expect("reading the events")
    .into_iter()
    .collect()
}

async fn wait_for_in_flight(receiver: &Receiver) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.in_flight() == 0 {
        assert!(Instant::now() < deadline, "no delivery was ever in flight");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_deliveries_survive_kill_9_mid_delivery_at_least_once_and_under_one_id_each() {
    let mut cluster = Cluster::start_with(&[
        ("COMMERCE_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("COMMERCE_WEBHOOK_FIRST_RETRY", "200ms"),
        ("COMMERCE_WEBHOOK_TIMEOUT", "2s"),
    ])
    .await;
    let pool = cluster.pool().await;
    let api = Api::new(cluster.command_url.clone(), cluster.query_url.clone());
    let receiver = Receiver::start().await;
    receiver.answer_after(Duration::from_millis(150));
    let (_, seller) = api.account("seller").await;

    let (since,): (Option<i64>,) = sqlx::query_as("SELECT max(position) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    let body = json!({"url": receiver.url, "event_types": ["inventory.*", "product.*"]});
    let secret = match api
        .command(Method::POST, "/v1/webhooks", Some(&seller), body)
        .await
    {
        Answer::Ok { body, .. } => body["secret"].as_str().unwrap().to_owned(),
        other => panic!("subscribing: {other:?}"),
    };
    for i in 0..SKUS {
        api.product(&seller, &format!("WH-{i}"), 100).await;
    }

    let workload = {
        let api = api.clone();
        let seller = seller.clone();
        tokio::spawn(async move {
            for i in 0..RESTOCKS {
                assert!(api.restock(&seller, &format!("WH-{}", i % SKUS), 1).await);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    // Kill every delivering process while the receiver holds a request open, twice.
    for _ in 0..2 {
        wait_for_in_flight(&receiver).await;
        for name in DELIVERING {
            cluster.kill9(name);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        for name in DELIVERING {
            cluster.start_process(name).await;
        }
    }
    workload.await.unwrap();

    let expected = expected(&pool, since.unwrap_or(0)).await;
    assert_eq!(expected.len(), SKUS + RESTOCKS);
    let deadline = Instant::now() + Duration::from_secs(90);
    let delivered = loop {
        let mut delivered: HashMap<(String, String, i64), Vec<String>> = HashMap::new();
        for received in receiver.received().iter().filter(|r| r.status == 204) {
            let body: Value = received.json();
            let event = (
                body["aggregate_type"].as_str().unwrap().to_owned(),
                body["aggregate_id"].as_str().unwrap().to_owned(),
                body["sequence"].as_i64().unwrap(),
            );
            delivered
                .entry(event)
                .or_default()
                .push(received.id.clone());
        }
        if expected.iter().all(|e| delivered.contains_key(e)) {
            break delivered;
        }
        if Instant::now() > deadline {
            cluster.keep();
            let missing: Vec<_> = expected
                .iter()
                .filter(|e| !delivered.contains_key(e))
                .collect();
            panic!("never delivered: {missing:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Nothing but the subscribed events, each under one webhook-id, each id one event's.
    let mut event_of_id: HashMap<&str, &(String, String, i64)> = HashMap::new();
    for (event, ids) in &delivered {
        assert!(expected.contains(event), "{event:?} was never recorded");
        assert!(
            ids.iter().all(|id| id == &ids[0]),
            "{event:?} came under ids {ids:?}"
        );
        if let Some(other) = event_of_id.insert(&ids[0], event) {
            panic!("{} named both {other:?} and {event:?}", ids[0]);
        }
    }
    for received in receiver.received() {
        verify(&secret, &received).unwrap();
    }
    // The kills cut requests off: those events came again, from a restarted process.
    assert!(
        receiver.abandoned() >= 1,
        "no delivery was cut off by a kill"
    );
    let duplicates: usize = delivered.values().map(|ids| ids.len() - 1).sum();
    eprintln!(
        "{} events delivered, {} requests cut off by the kills, {duplicates} events delivered twice",
        delivered.len(),
        receiver.abandoned()
    );
}

//! The engine on a 3-node NATS JetStream cluster (`NATS_URL` lists the three servers,
//! `COMMERCE_STREAM_REPLICAS=3`): the stream and its durable consumers are kept on all three,
//! and the buyers' and sellers' workload goes on while one node, then another, is killed with
//! `kill -9` and restarted. Once the engine settles, every acknowledged write has reached every
//! read model, once: the fault suite's invariants. And a malformed server list stops the start.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use commerce_projections::Namespace;
use futures::TryStreamExt;

use crate::client::Api;
use crate::cluster::{Cluster, NATS_NODES};
use crate::{crash, hold, Timeline, Workload};

/// Replicas of the stream and consumers: one on each node.
const REPLICAS: usize = NATS_NODES.len();

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_reach_every_read_model_once_through_nats_node_crashes() {
    let began = Instant::now();
    let mut cluster =
        Cluster::start_on_nats_cluster(&[("COMMERCE_STREAM_REPLICAS", &REPLICAS.to_string())])
            .await;
    eprintln!(
        "nats cluster suite: database {}, namespace {}, NATS at {}, logs in {} (started in {:.1}s)",
        cluster.database,
        cluster.namespace,
        cluster.nats_url,
        cluster.dir.display(),
        began.elapsed().as_secs_f64()
    );
    let servers: Vec<&str> = cluster.nats_url.split(',').collect();
    let jetstream = jetstream::new(async_nats::connect(servers).await.unwrap());
    let namespace = Namespace::parse(&cluster.namespace).unwrap();

    let stream = replicated_stream(&jetstream, &namespace).await;
    assert_eq!(stream.config.num_replicas, REPLICAS, "{stream:?}");

    let pool = cluster.pool().await;
    let api = Api::new(cluster.command_url.clone(), cluster.query_url.clone());
    let (workload, mut timeline) = Workload::start(&api, began).await;

    // By now every projection has made its durable consumer: each is kept on every node too.
    replicated_consumers(&jetstream, &namespace).await;

    // The stream's leader first (its election is the harder fault), later another node.
    let gap = Duration::from_secs(6);
    let down = Duration::from_secs(3);
    hold(&mut cluster, gap, &mut timeline).await;
    let first = stream_leader(&jetstream, &namespace, &mut timeline).await;
    crash(&mut cluster, first, down, &mut timeline).await;
    hold(&mut cluster, gap, &mut timeline).await;
    let leader = stream_leader(&jetstream, &namespace, &mut timeline).await;
    let second = if leader == first {
        other_than(first)
    } else {
        leader
    };
    crash(&mut cluster, second, down, &mut timeline).await;
    hold(&mut cluster, gap, &mut timeline).await;

    workload
        .finish_and_check(&mut cluster, &pool, &api, &mut timeline, began)
        .await;
    let stream = replicated_stream(&jetstream, &namespace).await;
    assert_eq!(stream.config.num_replicas, REPLICAS, "{stream:?}");
}

/// The engine's stream once the relay has made it and its replicas are all in place (the
/// leader and the others, `REPLICAS` servers in all).
async fn replicated_stream(
    jetstream: &jetstream::Context,
    namespace: &Namespace,
) -> jetstream::stream::Info {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = commerce_projections::stream::look_up_info(jetstream, namespace).await;
        if let Ok(info) = &info {
            let peers = info.cluster.as_ref().map_or(0, peers_of);
            if peers == REPLICAS {
                return info.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the stream is not on {REPLICAS} servers within 30 s: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until there are durable consumers and each is kept on `REPLICAS` servers.
async fn replicated_consumers(jetstream: &jetstream::Context, namespace: &Namespace) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let consumers = consumer_replicas(jetstream, namespace).await;
        if !consumers.is_empty() && consumers.iter().all(|(_, peers)| *peers == REPLICAS) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the durable consumers are not all on {REPLICAS} servers within 30 s: {consumers:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Each durable consumer of the stream, with how many servers keep it. Asked of each
/// consumer: a clustered server's consumer list gathers the infos with a deadline, and under
/// load it leaves some out or gives stale ones.
async fn consumer_replicas(
    jetstream: &jetstream::Context,
    namespace: &Namespace,
) -> Vec<(String, usize)> {
    let Ok(stream) = jetstream.get_stream(namespace.stream_name()).await else {
        return Vec::new();
    };
    let names: Vec<String> = stream
        .consumer_names()
        .try_collect()
        .await
        .unwrap_or_default();
    let mut replicas = Vec::new();
    for name in names {
        let peers = match stream.consumer_info(&name).await {
            Ok(info) => info.cluster.as_ref().map_or(0, peers_of),
            Err(_) => 0,
        };
        replicas.push((name, peers));
    }
    replicas
}

/// The leader and the replicas it names.
fn peers_of(cluster: &jetstream::stream::ClusterInfo) -> usize {
    usize::from(cluster.leader.is_some()) + cluster.replicas.len()
}

/// The node leading the stream now (they are named as their processes are).
async fn stream_leader(
    jetstream: &jetstream::Context,
    namespace: &Namespace,
    timeline: &mut Timeline,
) -> &'static str {
    let info = replicated_stream(jetstream, namespace).await;
    let leader = info.cluster.and_then(|c| c.leader).unwrap_or_default();
    timeline.note(format!("the stream's leader is {leader}"));
    NATS_NODES
        .into_iter()
        .find(|node| *node == leader)
        .unwrap_or_else(|| panic!("the stream's leader {leader:?} is none of {NATS_NODES:?}"))
}

fn other_than(node: &str) -> &'static str {
    NATS_NODES
        .into_iter()
        .find(|other| *other != node)
        .expect("three nodes")
}

#[test]
fn a_malformed_server_list_stops_the_start_saying_which_entry_without_echoing_it() {
    let output = std::process::Command::new(crate::binary::commerce_binary())
        .args(["serve", "command-api"])
        .env_clear()
        .env(
            "NATS_URL",
            "nats://127.0.0.1:4222,nats://user:Pa55word@127.0.0.1:notaport",
        )
        .env("COMMERCE_LOG_FORMAT", "json")
        .env("COMMERCE_BIND", "127.0.0.1:0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains("NATS_URL, server 2 of 2, is not a NATS server address"),
        "{stdout}{stderr}"
    );
    assert!(
        !stderr.contains("Pa55word") && !stdout.contains("Pa55word"),
        "{stdout}{stderr}"
    );
}

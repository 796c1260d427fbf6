//! Partitioned projections as separate processes: the orders and inventory read models run as
//! two partitions each, partition 0 in one projections process and partition 1 in the other
//! (`COMMERCE_PROJECTION_PARTITIONS=orders=2:0,…`), while the buyers' and sellers' workload
//! runs and one of them is killed with `kill -9` and restarted. Once the engine settles the
//! read models equal a fold of the store (the fault suite's invariants): the same read model
//! one consumer builds. Each partition is its own durable consumer, and each applied a share.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use commerce_projections::{Namespace, Partition};

use crate::client::Api;
use crate::cluster::{Cluster, Setup};
use crate::{crash, hold, Workload};

/// The busiest read models of the workload.
const PARTITIONED: [&str; 2] = ["orders", "inventory"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_partitions_on_two_processes_build_the_read_models_one_consumer_would() {
    let began = Instant::now();
    let partitions_of = |index: u32| {
        PARTITIONED
            .iter()
            .map(|name| format!("{name}=2:{index}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let pinned = |role: &str, _: &str| match role {
        "projections-1" => vec![("COMMERCE_PROJECTION_PARTITIONS", partitions_of(0))],
        "projections-2" => vec![("COMMERCE_PROJECTION_PARTITIONS", partitions_of(1))],
        _ => Vec::new(),
    };
    let mut cluster = Cluster::start_setup(Setup {
        role_env: Some(&pinned),
        ..Setup::default()
    })
    .await;
    eprintln!(
        "partitions suite: database {}, namespace {}, logs in {}",
        cluster.database,
        cluster.namespace,
        cluster.dir.display()
    );
    let pool = cluster.pool().await;
    let api = Api::new(cluster.command_url.clone(), cluster.query_url.clone());
    let (workload, mut timeline) = Workload::start(&api, began).await;

    hold(&mut cluster, Duration::from_secs(6), &mut timeline).await;
    crash(
        &mut cluster,
        "projections-2",
        Duration::from_secs(1),
        &mut timeline,
    )
    .await;
    hold(&mut cluster, Duration::from_secs(6), &mut timeline).await;
    workload
        .finish_and_check(&mut cluster, &pool, &api, &mut timeline, began)
        .await;

    // Two durable consumers per partitioned read model, none unpartitioned, each through the
    // stream; each partition's watermark stored, and each applied its own share of the orders.
    let jetstream = jetstream::new(
        async_nats::connect(cluster.nats_url.as_str())
            .await
            .unwrap(),
    );
    let namespace = Namespace::parse(&cluster.namespace).unwrap();
    let stream = jetstream.get_stream(namespace.stream_name()).await.unwrap();
    for name in PARTITIONED {
        assert!(
            stream
                .consumer_info(namespace.consumer_name(name))
                .await
                .is_err(),
            "{name} has no unpartitioned consumer"
        );
        for index in 0..2 {
            let consumer = Partition::new(index, 2)
                .unwrap()
                .consumer_name(&namespace, name);
            let info = stream.consumer_info(&consumer).await.unwrap();
            assert_eq!(info.num_pending, 0, "{consumer} caught up");
        }
        let partitions: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM projection_partitions \
             WHERE projection = $1 AND partitions = 2 AND horizon > '0'",
        )
        .bind(name)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(partitions, 2, "{name}: both partitions keep a watermark");
    }
    let orders: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = 'order'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let zero = Partition::new(0, 2).unwrap();
    let shares = orders.iter().filter(|id| zero.owns(id)).count();
    assert!(
        shares > 0 && shares < orders.len(),
        "both partitions had orders to apply: {shares} of {}",
        orders.len()
    );
}

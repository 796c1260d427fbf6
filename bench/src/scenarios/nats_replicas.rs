//! NATS replicas: what keeping the stream on three servers costs the relay. A 3-node JetStream
//! cluster is started on loopback for the scenario (`scripts/nats-cluster.sh`, on free ports, in
//! a scratch directory, stopped and removed afterwards), and the `limits` scenario's JetStream
//! measurements (event-sized messages with a `Nats-Msg-Id`, pipelined, then one at a time) run
//! against an R1 and an R3 stream on it, one after the other, in the same minute. The ratio
//! R3/R1 is the overhead of replication (every publish is acknowledged once a majority of the
//! three has it), on one machine whose cores the three servers share.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;
use serde::Serialize;
use serde_json::json;

use super::limits::{
    one_at_a_time_count, publish_one_at_a_time, publish_payload, publish_pipelined,
    scratch_stream_config, JetStreamRun,
};
use super::Bench;
use crate::report::{ratio, Row};

const NAME: &str = "nats-replicas";
/// The ports of one kind (client, route, monitoring) of the three nodes are consecutive.
const NODES: u16 = 3;

#[derive(Serialize)]
struct Replicated {
    replicas: usize,
    pipelined: JetStreamRun,
    one_at_a_time: JetStreamRun,
}

pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<()> {
    let cluster = LoopbackCluster::up()?;
    let servers = commerce::nats::NatsServers::parse(&cluster.url()?)?;
    let client = async_nats::connect(&servers)
        .await
        .context("connecting to the loopback cluster")?;
    let jetstream = async_nats::jetstream::new(client);
    let payload = publish_payload()?;
    let messages = bench.sizes.jetstream_messages;
    let window = bench.sizes.jetstream_window;
    let single = one_at_a_time_count(messages);

    let mut measured: Vec<Replicated> = Vec::new();
    for replicas in [1, 3] {
        let name = format!("BENCH_R{replicas}");
        let prefix = format!("bench.r{replicas}");
        jetstream
            .create_stream(scratch_stream_config(&name, &prefix, replicas))
            .await
            .with_context(|| format!("creating an R{replicas} stream on the cluster"))?;
        eprintln!("  R{replicas}: {messages} publishes, {window} awaiting their ack at once; then {single} one at a time");
        let pipelined = publish_pipelined(&jetstream, &prefix, messages, window, &payload).await?;
        let one_at_a_time = publish_one_at_a_time(&jetstream, &prefix, single, &payload).await?;
        jetstream
            .delete_stream(&name)
            .await
            .with_context(|| format!("deleting the R{replicas} stream"))?;
        measured.push(Replicated {
            replicas,
            pipelined,
            one_at_a_time,
        });
    }

    let r1 = measured.first().map(|m| m.pipelined.acks_per_second);
    let r1_single = measured.first().map(|m| m.one_at_a_time.acks_per_second);
    for m in &measured {
        let mut row = Row::new(
            NAME,
            format!("R{} publish+ack, {window} in flight", m.replicas),
            "msg",
        );
        row.rate = Some(m.pipelined.acks_per_second);
        let row = row
            .ratio(ratio(m.pipelined.acks_per_second, r1), "R1")
            .note(format!(
                "{messages} msgs of {} B, 3-node loopback cluster",
                payload.len()
            ));
        bench.report.row(row);
        if let Some(latency) = &m.one_at_a_time.latency {
            bench.report.row(
                Row::from_summary(
                    NAME,
                    format!("R{} publish+ack, 1 in flight", m.replicas),
                    "msg",
                    latency,
                )
                .ratio(ratio(m.one_at_a_time.acks_per_second, r1_single), "R1")
                .note(format!("{single} msgs")),
            );
        }
    }
    bench.report.detail(NAME, json!({ "runs": measured }));
    cluster.down()
}

/// The cluster `scripts/nats-cluster.sh` starts, on ports found free and in a scratch
/// directory; stopped (by the script, which signals only the PIDs it recorded) and removed when
/// dropped, on failure too.
struct LoopbackCluster {
    dir: PathBuf,
    env: Vec<(&'static str, String)>,
    stopped: bool,
}

impl LoopbackCluster {
    fn script() -> PathBuf {
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/nats-cluster.sh"
        ))
    }

    fn up() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "commerce-bench-nats-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ));
        let base = free_port_run(3 * NODES)?;
        let cluster = Self {
            env: vec![
                ("NATS_CLUSTER_DIR", dir.display().to_string()),
                ("NATS_CLUSTER_PORT", base.to_string()),
                ("NATS_CLUSTER_ROUTE_PORT", (base + NODES).to_string()),
                ("NATS_CLUSTER_HTTP_PORT", (base + 2 * NODES).to_string()),
                ("NATS_CLUSTER_NAME", "bench".to_owned()),
            ],
            dir,
            stopped: false,
        };
        cluster.script_run("up")?;
        Ok(cluster)
    }

    /// The `NATS_URL` that lists the three servers.
    fn url(&self) -> anyhow::Result<String> {
        Ok(self.script_run("url")?.trim().to_owned())
    }

    fn down(mut self) -> anyhow::Result<()> {
        self.stopped = true;
        let result = self.script_run("down").map(|_| ());
        let _ = std::fs::remove_dir_all(&self.dir);
        result
    }

    fn script_run(&self, command: &str) -> anyhow::Result<String> {
        let output = Command::new(Self::script())
            .arg(command)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .with_context(|| format!("running scripts/nats-cluster.sh {command}"))?;
        anyhow::ensure!(
            output.status.success(),
            "scripts/nats-cluster.sh {command} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

impl Drop for LoopbackCluster {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.script_run("down");
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The first of `count` consecutive ports on which nothing listens now (the script numbers a
/// kind of port from a base).
fn free_port_run(count: u16) -> anyhow::Result<u16> {
    for _ in 0..50 {
        let base = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let Some(last) = base.checked_add(count) else {
            continue;
        };
        let held: Vec<_> = (base..last)
            .map_while(|port| TcpListener::bind(("127.0.0.1", port)).ok())
            .collect();
        if held.len() == usize::from(count) {
            return Ok(base);
        }
    }
    anyhow::bail!("found no {count} consecutive free ports on 127.0.0.1")
}

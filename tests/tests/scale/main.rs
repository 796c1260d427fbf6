//! Beyond one machine, on loopback: the engine as separate processes on a NATS cluster, a
//! Postgres read replica, PgBouncer in transaction mode and partitioned projections, each
//! started by its test on free ports (only their own PIDs are ever signalled).
//!
//! Needs the `commerce` binary built (`make test` builds it), Postgres at `DATABASE_URL`, and
//! `nats-server`, Postgres's server binaries and `pgbouncer` on the machine
//! (`scripts/services.sh up` installs what is missing).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/binary.rs"]
mod binary;
#[path = "../support/cleanup.rs"]
mod cleanup;
// The fault suite's harness: each test here uses part of it.
#[allow(dead_code)]
#[path = "../faults/client.rs"]
mod client;
#[allow(dead_code)]
#[path = "../faults/cluster.rs"]
mod cluster;
#[allow(dead_code)]
#[path = "../faults/invariants.rs"]
mod invariants;
mod pgbouncer;
#[path = "../support/postgres.rs"]
mod postgres;
#[allow(dead_code)]
#[path = "../faults/workload.rs"]
mod workload;

mod replica;

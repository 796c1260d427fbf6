//! The relay and the projection runtime against real Postgres and NATS JetStream.
//!
//! Needs the services of `scripts/services.sh` (`TEST_POSTGRES_ROOT`, default
//! `postgres://postgres@127.0.0.1:5432`; `NATS_URL`, default `nats://127.0.0.1:4222`).
//! `TEST_LOG=1` shows the logs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;
mod partitions;
mod projection;
mod relay;

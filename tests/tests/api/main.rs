//! End-to-end tests of the HTTP API against real Postgres (and NATS for readiness).
//! Every test starts its own engine on port 0 with its own database and namespace.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/binary.rs"]
mod binary;
#[path = "../support/cleanup.rs"]
mod cleanup;
mod helpers;
// Shared by the API and fault tests; each uses part of it.
#[allow(dead_code)]
#[path = "../support/receiver.rs"]
mod receiver;

mod accounts;
mod admin;
mod bad_input;
mod cart;
mod checkout;
mod cli;
mod concurrency;
mod degraded;
mod event_store;
mod idempotency;
mod inventory;
mod leases;
mod least_privilege;
mod lookups;
mod ops;
mod orders;
mod privacy;
mod problems;
mod products;
mod read_models;
mod reads;
mod rebuild;
mod saga_batches;
mod search;
mod security;
mod upcasting;
mod validation;
mod webhooks;

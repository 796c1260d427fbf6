//! The read side's plumbing: events leave the event store through the **relay** and reach the
//! read models through the **projection runtime**.
//!
//! ```text
//! Postgres `events` ──relay──▶ JetStream `<NS>_EVENTS` ──durable consumer per projection──▶ read models
//!   (commit order, gap-safe)     `<ns>.events.<type>.<id>`    (batched, deduplicated, gaps healed)
//! ```
//!
//! - [`relay`]: [`Relay`] publishes every event in commit order, exactly one active instance
//!   per namespace (advisory lock; standbys take over), checkpointing after JetStream acked.
//! - [`runtime`]: the [`Projection`] trait a read model implements, and
//!   [`ProjectionRuntime`] which runs one worker per projection. Its module documentation
//!   explains the watermark that read-your-writes relies on.
//! - [`positions`]: [`wait_for_position`] for `X-Min-Position`, and the projections' progress.
//! - [`dead_letters`]: events a projection parked, for operators to list and retry, and the
//!   sagas a parked event left stuck.
//! - [`failure`]: which failures are transient (retried, never parked) and the retry backoff.
//! - [`republish`]: an operator's republish of the store from a position, as the relay publishes.
//! - [`replay`]: [`apply_from_store`], applying events straight from the event store.
//! - [`envelope`]: [`StoredEvent`] and how it travels as a NATS message.
//! - [`namespace`] and [`stream`]: names and the stream's configuration (its retention).
//! - [`outage`]: degraded mode made visible: how long NATS, the relay or a consumer has been
//!   failing, reported at WARN at once and at ERROR past a bound.
//!
//! Tables (migration `20261122000003` and later): `relay_checkpoint`, `relay_parked_events`,
//! `projection_positions`, `projection_sequences`, `dead_letters`, `stuck_sagas`, `republishes`.

pub mod dead_letters;
pub mod envelope;
pub mod failure;
pub mod namespace;
pub mod outage;
pub mod positions;
pub mod read_models;
pub mod rebuild;
pub mod relay;
pub mod replay;
pub mod republish;
pub mod runtime;
pub mod stream;

pub use envelope::StoredEvent;
pub use namespace::Namespace;
pub use positions::{applied_version, wait_for_position, Horizons};
pub use relay::{Relay, RelayConfig, RelayStatus};
pub use replay::apply_from_store;
pub use runtime::{
    fold_ahead, run_projections, Fold, FoldedBatch, Partition, Partitioning, Projection,
    ProjectionConfig, ProjectionRuntime, SharedProjection,
};

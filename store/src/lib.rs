//! The write side's storage: the Postgres event store and the command pipeline on top of it.
//!
//! - `db`: connecting, creating and migrating the database.
//! - `unit_of_work`: what one command writes, committed in one transaction: its events, the
//!   claims it needs, the idempotency record of its response and a due snapshot.
//! - `repository`: loads aggregates (snapshot plus newer events), keeps recently used ones in
//!   memory, serialises commands per aggregate in-process and retries on conflicts.
//! - `history`: any stream folded up to a position or an instant, for operators (time travel).
//! - `claims` and `idempotency`: the guard tables beside the events.
//! - `credentials`: password hashes and credential versions (what tokens are checked against),
//!   beside the events and never in them.
//! - `throttle`: failed sign-ins per IP and per IP and account, shared by every process.
//! - `keys`: the people's data keys, which seal personal data into events and open it for readers.
//! - `payment_tokens`: card tokens, kept beside the events (never in them) until the payment is final.
//! - `trace`: the OpenTelemetry trace context events carry in their metadata (`traceparent`).
//!
//! cqrs-es supplies the `Aggregate` trait and its test framework; the persistence is ours, so that
//! a command costs one transaction and no reload (see DESIGN.md, "The hot path").

pub mod batch;
pub mod claims;
pub mod credentials;
pub mod db;
pub mod error;
pub mod history;
pub mod idempotency;
pub mod keys;
pub mod metadata;
pub mod payment_tokens;
pub mod repository;
pub mod saga_due;
pub mod throttle;
pub mod trace;
pub mod unit_of_work;

pub use batch::{Batch, BatchError};
pub use claims::Claim;
pub use error::{CommandError, CommitError};
pub use idempotency::{IdempotencyRecord, StoredResponse};
pub use metadata::Metadata;
pub use repository::{
    AsOf, CommandOptions, Companion, Folded, IdempotencyKey, Loaded, Outcome, Repository, Respond,
    MAX_EVENT_BYTES,
};
pub use unit_of_work::{Guard, UnitOfWork};

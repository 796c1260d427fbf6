//! The read side of the HTTP API: every GET route over the read models.
//!
//! - `state`: the pools, the token keys and how long `X-Min-Position` may wait; `Reads`, the
//!   database one request reads.
//! - `replica`: the read replica (`COMMERCE_READ_DATABASE_URL`), its health and the fallback to
//!   the primary.
//! - `consistency`: read-your-writes: wait until the projections a route reads have applied a position.
//! - `routes/`: one file per resource; SQL lives beside the handler that needs it.

pub mod consistency;
pub mod replica;
pub mod routes;
mod state;

pub use replica::ReadReplica;
pub use routes::{router, ApiDoc};
pub use state::{QueryState, Reads};

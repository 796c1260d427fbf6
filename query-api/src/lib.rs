//! The read side of the HTTP API: every GET route over the read models.
//!
//! - `state`: the pool, the token keys and how long `X-Min-Position` may wait.
//! - `consistency`: read-your-writes: wait until the projections a route reads have applied a position.
//! - `routes/`: one file per resource; SQL lives beside the handler that needs it.

pub mod consistency;
pub mod routes;
mod state;

pub use routes::{router, ApiDoc};
pub use state::QueryState;

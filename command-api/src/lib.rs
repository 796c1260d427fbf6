//! The command side of the HTTP API: every POST, PUT, PATCH and DELETE route.
//!
//! - `state`: the repositories and keys the handlers share.
//! - `pipeline`: runs a command with idempotency keys, `If-Match`, `ETag` and `X-Event-Position`.
//! - `errors`: how each domain refusal maps to a status code.
//! - `catalog`: what the catalog says of a SKU, for carts and checkout.
//! - `routes/`: one file per resource.

mod catalog;
mod errors;
pub mod pipeline;
pub mod routes;
mod state;

pub use routes::accounts::{create_admin, ensure_admin, AdminAccount, AdminRefusal};
pub use routes::{router, ApiDoc};
pub use state::CommandState;

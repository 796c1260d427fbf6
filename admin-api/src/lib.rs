//! The operators' HTTP API: every route under `/v1/admin` (the contract the operator CLI is
//! written against), admin role only.
//!
//! - `state`: the pool, the token keys, the projections this engine runs, and JetStream with
//!   the namespace (for republishing).
//! - `admin`: the extractor that lets only admins through (401 anonymous, 403 other roles),
//!   before any other input is looked at.
//! - `sagas`: which sagas are stuck and why, from `saga_deadlines` and `stuck_sagas`.
//! - `redact`: credentials kept out of what the routes show.
//! - `routes/`: one file per resource; each route's answer is a type of its own, documented in
//!   the OpenAPI description ([`ApiDoc`]).

mod admin;
mod redact;
pub mod routes;
mod sagas;
pub mod state;

pub use admin::Admin;
pub use routes::{router, ApiDoc};
pub use state::AdminState;

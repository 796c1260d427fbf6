//! HTTP plumbing shared by the command and query APIs.
//!
//! - `problem`: the one place errors become RFC 9457 `application/problem+json` responses.
//! - `extract`: JSON, path and query extractors whose rejections are problems too; they refuse
//!   a NUL (U+0000) in any text, which Postgres cannot store.
//! - `page`: `limit` and opaque `cursor` pagination, shared by every listing.
//! - `auth`: JWTs (issuing, verifying) and the `Caller` extractor with role checks.
//! - `request`: request ids, `Idempotency-Key` and `If-Match`.
//! - `telemetry`: request count and latency by route for `/metrics`.

pub mod auth;
pub mod extract;
pub mod page;
pub mod problem;
pub mod request;
pub mod telemetry;

pub use auth::{Caller, JwtKeys};
pub use extract::{ApiJson, ApiPath, ApiQuery};
pub use problem::ApiError;
pub use request::RequestContext;

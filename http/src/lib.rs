//! HTTP plumbing shared by the command and query APIs.
//!
//! - `problem`: the one place errors become RFC 9457 `application/problem+json` responses.
//! - `problem_types`: the page each problem `type` leads to, and the layer making types absolute.
//! - `extract`: JSON, path and query extractors whose rejections are problems too, naming every
//!   field or parameter that does not fit at once; `ValidJson` also checks a body against its
//!   rules (`commerce_domain::values::Validate`). They refuse a NUL (U+0000) in any text, which
//!   Postgres cannot store.
//! - `page`: `limit` and opaque `cursor` pagination, shared by every listing.
//! - `auth`: JWTs (issuing, verifying against the credential version) and the `Caller`
//!   extractor with role checks.
//! - `client_ip`: the client's address (socket peer; `X-Forwarded-For` only when trusted).
//! - `listener`: the TCP listener every server serves on (`TCP_NODELAY` set).
//! - `rate_limit`: per-caller rate limiting of the API routes (tower_governor).
//! - `request`: request ids, `Idempotency-Key` and `If-Match`.
//! - `wording`: serde's mismatch messages said again for people, with a JSON pointer.
//! - `telemetry`: request count and latency by route for `/metrics`, and the request's span.

pub mod auth;
pub mod client_ip;
pub mod extract;
pub mod listener;
pub mod page;
pub mod problem;
pub mod problem_types;
pub mod rate_limit;
pub mod request;
pub mod telemetry;
pub mod wording;

pub use auth::{Caller, JwtKeys};
pub use client_ip::ClientIp;
pub use extract::{ApiJson, ApiPath, ApiQuery, ValidJson};
pub use problem::ApiError;
pub use request::RequestContext;

//! The payment gateway: the HTTP client the checkout saga charges cards through, and the
//! sandbox provider it talks to unless `COMMERCE_PAYMENT_GATEWAY_URL` names a real one.
//!
//! - `client`: [`HttpGateway`], the [`PaymentGateway`](commerce_domain::services::PaymentGateway)
//!   over HTTP, with a per-request timeout and bounded retries of 5xx answers and connection
//!   failures, configured by [`GatewayClientConfig`].
//! - `sandbox`: [`Sandbox`], an in-memory provider served by axum whose behaviour is chosen by
//!   the card token (`tok_ok`, `tok_decline`, `tok_flaky`, `tok_slow`, `tok_timeout`) and which
//!   records every call; [`SandboxHandle`] is a running one.
//! - `wire`: the steps and request bodies both sides share.
//!
//! The provider's API, JSON in and out; errors are `{code, reason}`:
//!
//! | method and path | body | answers |
//! |---|---|---|
//! | `POST /v1/payments/{payment_id}/authorize` | `{amount: {amount, currency}, token}` | 200 `{authorization_id}`, 402 declined, 409, 503 |
//! | `POST /v1/payments/{payment_id}/capture` | `{amount}` | 200, 409 beyond the authorisation or without one |
//! | `POST /v1/payments/{payment_id}/void` | none | 200 (a no-op when nothing is authorised), 409 once captured |
//! | `POST /v1/payments/{payment_id}/refund` | `{amount}` | 200, 409 beyond the capture |
//! | `GET /v1/payments/{payment_id}`, `GET /v1/payments` | | the sandbox's records (sandbox only) |
//!
//! Every POST carries `Idempotency-Key: {payment_id}:{step}`, the same on every retry: the
//! provider answers a repeated key with its first answer and does nothing again, so a retried
//! call never charges twice.

mod client;
mod sandbox;
mod wire;

pub use client::{GatewayClientConfig, HttpGateway};
pub use sandbox::{CallOutcome, CallView, PaymentStatus, PaymentView, Sandbox, SandboxHandle};
pub use wire::Step;

//! Outbound webhooks, as API.md's Webhooks section fixes them.
//!
//! - [`subscription`]: the `webhooks` table: who subscribed which URL to which event types,
//!   and the signing keys (rotatable).
//! - [`catalogue`]: the public catalogue of event types and the patterns that name them.
//! - [`fan_out`]: one more durable consumer of the event stream (a projection): each event
//!   becomes one pending delivery per webhook that takes it, exactly once; and replays.
//! - [`scope`]: what concerns a seller, and what a seller may see of it.
//! - [`payload`]: a delivery's body, built from the event at each attempt.
//! - [`delivery`]: the worker that sends, signs ([`signature`]), retries ([`backoff`]),
//!   breaks circuits and logs every attempt.
//! - [`address`]: which URLs may receive (public `http(s)` only, unless allowed).
//! - [`routes`]: the HTTP routes.

pub mod address;
pub mod backoff;
pub mod catalogue;
pub mod delivery;
pub mod document;
pub mod fan_out;
pub mod payload;
pub mod routes;
pub mod scope;
pub mod signature;
pub mod subscription;

pub use delivery::{run as run_deliveries, DeliveryConfig};
pub use fan_out::WebhookFanOut;
pub use routes::{router, ApiDoc, WebhookState};

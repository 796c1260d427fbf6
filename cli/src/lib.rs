//! The commerce engine as one deployable: configuration, telemetry, the assembled HTTP
//! application, the demo catalog, and the operator commands (`operator/`). `main.rs` only
//! parses the command line and waits.

pub mod app;
pub mod config;
pub mod degraded;
pub mod demo;
pub mod metrics;
pub mod nats;
pub mod openapi;
pub mod operator;
pub mod ops;
pub mod telemetry;

pub use app::Application;
pub use config::Config;

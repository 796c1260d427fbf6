//! The checkout process manager and what it talks to.
//!
//! - `trigger`: the projection that wakes a saga when its order is cancelled, delivered or
//!   returned (a placed order's saga is woken by the checkout's own transaction).
//! - `deadlines`: the `saga_deadlines` table, claimed with `FOR UPDATE SKIP LOCKED`.
//! - `worker`: claims due sagas and drives them; any number share the table.
//! - `checkout`: one saga's steps (the decisions are the domain's `CheckoutSaga`), consecutive
//!   ones committed together.
//! - `gateway`: the payment gateway's HTTP client and the sandbox gateway server.

pub mod checkout;
pub mod deadlines;
pub mod gateway;
pub mod trigger;
pub mod worker;

pub use checkout::{SagaConfig, SagaDriver};
pub use trigger::SagaTriggers;
pub use worker::{run_worker, WorkerConfig};

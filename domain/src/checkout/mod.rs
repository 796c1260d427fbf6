//! The checkout saga: an event-sourced process manager, one stream per order (its id is the
//! order's). Its events are the auditable record of every decision and effect; [`CheckoutSaga::next_action`]
//! says, purely, what to do next from what it recorded and what it sees of the order.
//!
//! Happy path: reserve every line → mark the order reserved → authorise the payment → mark the
//! order authorised → confirm → capture → commit the stock. A refused reservation, a declined or
//! unanswered authorisation, an expired hold or the buyer's cancellation compensates in reverse:
//! void or refund, release (or restore) every unit held, cancel the order with a reason the buyer
//! can read, give the buyer's cart the order's lines back. A returned order is refunded and its
//! stock restored.

mod aggregate;
mod events;

pub use aggregate::{CheckoutSaga, Facts, SagaAction, SagaCommand, SagaError, SagaOutcome};
pub use events::SagaEvent;

//! A payment: authorise, capture, void and refund each at most once, never beyond the authorised amount.

mod aggregate;
mod commands;
mod error;
mod events;

pub use aggregate::{Payment, PaymentStatus};
pub use commands::PaymentCommand;
pub use error::PaymentError;
pub use events::PaymentEvent;

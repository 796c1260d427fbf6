//! Orders: one state machine from placement to delivery (and return), or to cancellation.

mod aggregate;
mod commands;
mod error;
mod events;
mod values;

pub use aggregate::{Order, OrderStatus};
pub use commands::OrderCommand;
pub use error::OrderError;
pub use events::OrderEvent;
pub use values::{OrderLine, ShippingAddress};

//! Stock of one SKU: `available = on_hand − reserved ≥ 0` at all times, one reservation per order.

mod aggregate;
mod commands;
mod error;
mod events;

pub use aggregate::{Inventory, StockLevels};
pub use commands::InventoryCommand;
pub use error::InventoryError;
pub use events::InventoryEvent;

/// Most units one SKU may hold, so levels never overflow.
pub const MAX_ON_HAND: i64 = 1_000_000_000;

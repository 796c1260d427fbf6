//! The buyer's cart and wishlist: one stream per buyer, whose id is the buyer's account id.

mod aggregate;
mod commands;
mod error;
mod events;
mod restore;

pub use aggregate::{Cart, CartLine};
pub use commands::{CartCommand, CatalogItem};
pub use error::CartError;
pub use events::CartEvent;

/// Most units of one SKU a cart line may hold.
pub const MAX_LINE_QUANTITY: u32 = 1_000;
/// Most distinct SKUs a cart may hold.
pub const MAX_LINES: usize = 100;

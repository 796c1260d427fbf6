//! A product of one seller: fixed fields (name, price, category), free-form attributes and
//! variants that each have their own SKU.

mod aggregate;
mod commands;
mod draft;
mod error;
mod events;

pub use aggregate::Product;
pub use commands::ProductCommand;
pub use draft::{Attributes, ProductChanges, ProductDraft, Variant};
pub use error::ProductError;
pub use events::ProductEvent;

//! A buyer's review of a product: only after that buyer's order of it was delivered, one per
//! buyer and product (the stream id is the pair).

mod aggregate;

pub use aggregate::{checked, Review, ReviewCommand, ReviewError, ReviewEvent};

/// The stream id of `buyer`'s review of `product`.
pub fn review_id(product: crate::ProductId, buyer: crate::AccountId) -> String {
    format!("{product}:{buyer}")
}

use crate::Sku;

/// Why a product command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProductError {
    #[error("the product already exists")]
    AlreadyCreated,
    #[error("no such product")]
    NotFound,
    #[error("only the seller who owns the product may change it")]
    NotOwner,
    #[error("the product is delisted")]
    Delisted,
    #[error("SKU {0} appears twice in the product")]
    DuplicateSku(Sku),
    #[error("nothing to change")]
    NoChanges,
    #[error("{0}")]
    Invalid(String),
}

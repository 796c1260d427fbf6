use crate::values::Violations;

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
    #[error("nothing to change")]
    NoChanges,
    /// Fields that break a rule, each with where it is (every one of them, not the first).
    #[error("{0}")]
    Invalid(Violations),
}

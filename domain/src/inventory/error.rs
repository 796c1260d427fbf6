/// Why a stock command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    #[error("quantity must be at least 1")]
    NonPositiveQuantity,
    #[error("delta must not be 0")]
    ZeroDelta,
    #[error("a reason of 1 to 500 characters is required")]
    MissingReason,
    #[error("on hand would exceed {max} units", max = super::MAX_ON_HAND)]
    TooMuchStock,
    #[error("on hand would fall to {on_hand}, below the {reserved} units reserved")]
    BelowReserved { on_hand: i64, reserved: i64 },
    #[error("out of stock: {requested} requested, {available} available")]
    OutOfStock { requested: i64, available: i64 },
    #[error("the order holds no committed units of this SKU")]
    NothingCommitted,
    #[error("the order's hold was released; it cannot be reserved again")]
    AlreadyReleased,
}

use super::OrderStatus;

/// Why an order command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("the order has already been placed")]
    AlreadyPlaced,
    #[error("no such order")]
    NotPlaced,
    #[error("an order needs at least one line")]
    NoLines,
    #[error("the order total does not match its lines")]
    TotalMismatch,
    #[error("an order that is {from} cannot be {action}")]
    InvalidTransition {
        from: OrderStatus,
        action: &'static str,
    },
    #[error("the return window of this order has closed")]
    ReturnWindowClosed,
    #[error("{0}")]
    InvalidInput(String),
}

use super::PaymentStatus;

/// Why a payment command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    #[error("the payment has already been requested")]
    AlreadyRequested,
    #[error("no such payment")]
    NotRequested,
    #[error("a payment that is {from} cannot be {action}")]
    InvalidTransition {
        from: PaymentStatus,
        action: &'static str,
    },
    #[error(
        "the amount must be positive, in the payment's currency and at most {limit} minor units"
    )]
    InvalidAmount { limit: i64 },
}

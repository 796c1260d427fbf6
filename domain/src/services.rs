//! Services the domain calls out to, as traits: the adapters live outside the domain.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::{Money, PaymentId};

/// Why a payment provider did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The provider answered no (card declined, insufficient funds…); retrying will not help.
    #[error("declined: {0}")]
    Declined(String),
    /// No answer in time; the call may or may not have taken effect.
    #[error("the payment provider did not answer in time")]
    Timeout,
    /// The provider failed (5xx, connection refused) after every retry.
    #[error("the payment provider is unavailable: {0}")]
    Unavailable(String),
}

/// What a gateway call returns.
pub type GatewayFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, GatewayError>> + Send + 'a>>;

/// A payment provider. Every call is keyed by the payment id and the step, so that a retried
/// call (after a timeout, a crash or a redelivered event) never charges twice.
pub trait PaymentGateway: Send + Sync {
    /// Authorise `amount` on the card behind `token`: the provider's authorisation id. No
    /// answer `within` (the time left before the payment's deadline) is a
    /// [`GatewayError::Timeout`].
    fn authorize<'a>(
        &'a self,
        payment_id: PaymentId,
        amount: Money,
        token: &'a str,
        within: Duration,
    ) -> GatewayFuture<'a, String>;
    /// Take `amount` of the payment's authorisation.
    fn capture(&self, payment_id: PaymentId, amount: Money) -> GatewayFuture<'_, ()>;
    /// Drop the payment's authorisation (a no-op at the provider when there is none).
    fn void(&self, payment_id: PaymentId) -> GatewayFuture<'_, ()>;
    /// Give back `amount` of what the payment captured.
    fn refund(&self, payment_id: PaymentId, amount: Money) -> GatewayFuture<'_, ()>;
}

use crate::{Money, OrderId};

/// Commands recording what the payment provider did.
#[derive(Debug, Clone, PartialEq)]
pub enum PaymentCommand {
    /// Ask for an authorisation of `amount` for an order.
    Request { order_id: OrderId, amount: Money },
    /// The provider authorised; `authorization_id` is its reference.
    RecordAuthorized { authorization_id: String },
    /// The provider declined, or never answered in time.
    RecordDeclined { reason: String },
    /// Take `amount` (at most the authorised amount) of the authorisation.
    Capture { amount: Money },
    /// Drop an authorisation that was not captured.
    Void,
    /// Give back `amount` (at most what was captured).
    Refund { amount: Money },
}

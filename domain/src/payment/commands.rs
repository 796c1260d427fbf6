use crate::{Money, OrderId};

/// Commands recording what the payment provider did.
#[derive(Debug, Clone, PartialEq)]
pub enum PaymentCommand {
    /// Ask for an authorisation of `amount` for an order.
    Request { order_id: OrderId, amount: Money },
    /// The provider authorised; `authorization_id` is its reference.
    RecordAuthorized { authorization_id: String },
    /// The provider declined.
    RecordDeclined { reason: String },
    /// The provider did not answer before the payment deadline.
    RecordTimedOut,
    /// Take `amount` (at most the authorised amount) of the authorisation.
    Capture { amount: Money },
    /// Drop an authorisation that was not captured (or whose answer never came).
    Void,
    /// Give back `amount` (at most what was captured).
    Refund { amount: Money },
}

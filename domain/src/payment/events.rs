use serde::{Deserialize, Serialize};

use crate::{Money, OrderId};

/// What happened to a payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum PaymentEvent {
    /// An authorisation was asked for.
    PaymentRequested { order_id: OrderId, amount: Money },
    /// The provider authorised the amount.
    PaymentAuthorized { authorization_id: String },
    /// The provider declined.
    PaymentDeclined { reason: String },
    /// The provider did not answer before the payment deadline.
    PaymentTimedOut,
    /// Money was taken.
    PaymentCaptured { amount: Money },
    /// The authorisation was dropped.
    PaymentVoided,
    /// Money was given back.
    PaymentRefunded { amount: Money },
}

crate::domain_event!(PaymentEvent for crate::payment::Payment {
    PaymentRequested,
    PaymentAuthorized,
    PaymentDeclined,
    PaymentTimedOut,
    PaymentCaptured,
    PaymentVoided,
    PaymentRefunded,
});

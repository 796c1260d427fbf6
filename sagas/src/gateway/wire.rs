//! The provider's HTTP API as types, shared by the client and the sandbox so the two cannot
//! drift apart: the steps of a payment, the idempotency header and the request bodies.

use commerce_domain::Money;
use serde::{Deserialize, Serialize};

/// The header every POST carries; a repeated key gets the first response back.
pub(crate) const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// One step of a payment at the provider: the last segment of its POST path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// `POST /v1/payments/{payment_id}/authorize`: hold an amount on the card.
    Authorize,
    /// `POST /v1/payments/{payment_id}/capture`: take (part of) what was authorised.
    Capture,
    /// `POST /v1/payments/{payment_id}/void`: drop the authorisation.
    Void,
    /// `POST /v1/payments/{payment_id}/refund`: give back (part of) what was captured.
    Refund,
}

impl Step {
    /// The step as it appears in paths and idempotency keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Authorize => "authorize",
            Step::Capture => "capture",
            Step::Void => "void",
            Step::Refund => "refund",
        }
    }
}

/// The body of `authorize`. No `Debug`: the token must never reach a log line.
#[derive(Serialize, Deserialize)]
pub(crate) struct AuthorizeRequest {
    pub amount: Money,
    pub token: String,
}

/// The body of `capture` and `refund`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct AmountRequest {
    pub amount: Money,
}

//! The sandbox's records as served by `GET /v1/payments[/{payment_id}]`: public, so tests can
//! read them back with serde.

use chrono::{DateTime, Utc};
use commerce_domain::Money;
use serde::{Deserialize, Serialize};

use crate::gateway::wire::Step;

/// Where a payment stands at the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Nothing authorised (yet).
    None,
    Authorized,
    Declined,
    Captured,
    Voided,
    Refunded,
}

/// What the sandbox did with one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// 200: the card was authorised (for `tok_slow`, once its late answer went out).
    Authorized,
    /// 402: declined; stored, so a retry is declined again.
    Declined,
    /// 503 (`tok_flaky`): nothing done, nothing stored.
    Unavailable,
    /// `tok_slow`: the answer is on its way; becomes `authorized` when it goes out.
    Pending,
    /// `tok_timeout`: held open, never answered.
    Held,
    /// A key seen before: the first response is (or will be) given again; nothing done.
    Replayed,
    /// 4xx other than 402 (bad request, amount or state): nothing done, nothing stored.
    Rejected,
    Captured,
    Voided,
    /// A void with nothing authorised: 200, nothing to do.
    NoOp,
    Refunded,
}

/// One call the sandbox received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallView {
    pub step: Step,
    pub idempotency_key: String,
    pub outcome: CallOutcome,
    /// Why, for rejections, declines and anything out of the ordinary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When the call arrived.
    pub at: DateTime<Utc>,
}

/// A payment as the sandbox sees it: the body of `GET /v1/payments/{payment_id}`.
/// Amounts are `null` until something was authorised (the currency is unknown before).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentView {
    pub payment_id: String,
    pub status: PaymentStatus,
    pub authorization_id: Option<String>,
    pub authorized_amount: Option<Money>,
    pub captured_amount: Option<Money>,
    pub refunded_amount: Option<Money>,
    /// How many times the card was actually authorised: more than one is a double charge.
    pub successful_authorizations: u32,
    pub calls: Vec<CallView>,
}

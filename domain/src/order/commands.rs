use crate::order::OrderLine;
use crate::privacy::Sealed;
use crate::{AccountId, Money, OrderId};

/// Commands that move an order through its life.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderCommand {
    /// Place the order a cart checked out into.
    Place {
        order_id: OrderId,
        buyer_id: AccountId,
        lines: Vec<OrderLine>,
        total: Money,
        /// The [`crate::order::ShippingAddress`], validated by the caller, sealed for the buyer.
        shipping_address: Sealed,
    },
    /// Every line's stock is held.
    RecordInventoryReserved,
    /// The payment was authorised.
    RecordPaymentAuthorized,
    /// Stock and payment are secured: the order is confirmed.
    Confirm,
    /// The order left the warehouse.
    Ship {
        carrier: String,
        tracking_number: String,
    },
    /// The order reached the buyer.
    Deliver,
    /// The buyer sent the order back (refused once the return window closed).
    Return { reason: String },
    /// The return window of the delivered order closed.
    CloseReturns,
    /// The returned order was refunded.
    RecordRefund,
    /// Cancel before shipping, with a reason the buyer can read.
    Cancel {
        reason: String,
        cancelled_by: Option<AccountId>,
    },
}

use serde::{Deserialize, Serialize};

use crate::order::{OrderLine, ShippingAddress};
use crate::{AccountId, Money, PaymentId};

/// What happened to an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrderEvent {
    /// The buyer checked out; the order waits for stock and payment.
    OrderPlaced {
        buyer_id: AccountId,
        lines: Vec<OrderLine>,
        total: Money,
        payment_id: PaymentId,
        /// The payment provider's token for the buyer's card; never the card itself.
        payment_token: String,
        shipping_address: ShippingAddress,
    },
    /// Every line's stock is held for this order.
    InventoryReserved,
    /// The payment was authorised.
    PaymentAuthorized,
    /// The order is confirmed.
    OrderConfirmed,
    /// The order was handed to a carrier.
    OrderShipped {
        carrier: String,
        tracking_number: String,
    },
    /// The order reached the buyer.
    OrderDelivered,
    /// The buyer sent the order back.
    OrderReturned { reason: String },
    /// The delivered order's return window closed: it is kept for good.
    ReturnsClosed,
    /// The returned order was refunded.
    OrderRefunded,
    /// The order was cancelled; `reason` is shown to the buyer.
    OrderCancelled {
        reason: String,
        cancelled_by: Option<AccountId>,
    },
}

crate::domain_event!(OrderEvent {
    OrderPlaced,
    InventoryReserved,
    PaymentAuthorized,
    OrderConfirmed,
    OrderShipped,
    OrderDelivered,
    OrderReturned,
    ReturnsClosed,
    OrderRefunded,
    OrderCancelled,
});

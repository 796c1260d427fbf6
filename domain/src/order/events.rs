use serde::{Deserialize, Serialize};

use crate::order::OrderLine;
use crate::privacy::Personal;
use crate::{AccountId, Money, PaymentId, ShippingMethodId};

/// What happened to an order.
// `OrderPlaced` is far larger than the others; an event lives briefly between its decision and
// its serialisation, so boxing it would cost every match more than it saves.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum OrderEvent {
    /// The buyer checked out; the order waits for stock and payment. Version 2 (see
    /// [`crate::upcast`]) added the price breakdown: `total = subtotal − discount + shipping + tax`,
    /// all in one currency.
    OrderPlaced {
        buyer_id: AccountId,
        lines: Vec<OrderLine>,
        /// The sum of the lines.
        subtotal: Money,
        /// What a promotion took off the subtotal.
        discount: Money,
        shipping: Money,
        tax: Money,
        /// What the buyer pays.
        total: Money,
        /// The promotion the buyer applied, if any.
        promotion_code: Option<String>,
        /// The shipping method chosen at checkout, if any.
        shipping_method_id: Option<ShippingMethodId>,
        /// The order's payment. Up to version 2 the event also carried the provider's card token:
        /// version 3 leaves it to the `payment_tokens` table, which only the saga reads.
        payment_id: PaymentId,
        /// A [`crate::order::ShippingAddress`], sealed for the buyer (version 4 on).
        shipping_address: Personal,
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

crate::domain_event!(OrderEvent for crate::order::Order {
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

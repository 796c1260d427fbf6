use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::SagaOutcome;
use crate::order::OrderLine;
use crate::{AccountId, Money, OrderId, PaymentId, Sku};

/// What the checkout saga decided or saw done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum SagaEvent {
    /// The saga took charge of a placed order.
    SagaStarted {
        order_id: OrderId,
        buyer_id: AccountId,
        lines: Vec<OrderLine>,
        total: Money,
        payment_id: PaymentId,
        started_at: DateTime<Utc>,
        /// Past this instant, units still held without an authorised payment are released.
        hold_expires_at: DateTime<Utc>,
    },
    /// A line's units are held for the order.
    LineReserved { sku: Sku },
    /// The order is marked `reserved`.
    OrderMarkedReserved,
    /// The payment provider was asked to authorise; it must answer by `deadline`.
    AuthorizationRequested {
        at: DateTime<Utc>,
        deadline: DateTime<Utc>,
    },
    /// The provider authorised.
    PaymentAuthorized { authorization_id: String },
    /// The order is marked `authorized`.
    OrderMarkedAuthorized,
    /// The order is confirmed.
    OrderConfirmed,
    /// The payment was captured.
    PaymentCaptured,
    /// A line's units were sold: out of `reserved` and `on_hand`.
    StockCommitted { sku: Sku },
    /// Something failed or the buyer cancelled: undo what was done. `reason` is for the buyer.
    CompensationStarted { reason: String },
    /// The authorisation was voided (or there was none to void).
    PaymentVoided,
    /// The captured amount was refunded.
    PaymentRefunded,
    /// A line's held units were released.
    LineReleased { sku: Sku },
    /// A line's sold units were put back on hand.
    StockRestored { sku: Sku },
    /// The order is cancelled (by the saga, or it already was by its buyer).
    OrderCancelled,
    /// The buyer's cart got the cancelled order's lines back (the cart's `CartRestored`).
    CartRestored,
    /// The buyer returned the order: refund it.
    ReturnStarted,
    /// The returned order is marked refunded.
    OrderMarkedRefunded,
    /// The confirmed order was delivered; its return window closes at `settle_at`.
    DeliveryNoted { settle_at: DateTime<Utc> },
    /// The order's return window closed: it can no longer be sent back.
    ReturnsClosed,
    /// A line's sale is final: the SKU forgot the order's commitment.
    StockSettled { sku: Sku },
    /// The saga is over.
    SagaCompleted { outcome: SagaOutcome },
}

crate::domain_event!(SagaEvent for crate::checkout::CheckoutSaga {
    SagaStarted,
    LineReserved,
    OrderMarkedReserved,
    AuthorizationRequested,
    PaymentAuthorized,
    OrderMarkedAuthorized,
    OrderConfirmed,
    PaymentCaptured,
    StockCommitted,
    CompensationStarted,
    PaymentVoided,
    PaymentRefunded,
    LineReleased,
    StockRestored,
    OrderCancelled,
    CartRestored,
    ReturnStarted,
    OrderMarkedRefunded,
    DeliveryNoted,
    ReturnsClosed,
    StockSettled,
    SagaCompleted,
});

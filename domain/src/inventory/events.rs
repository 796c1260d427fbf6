use serde::{Deserialize, Serialize};

use super::StockLevels;
use crate::OrderId;

/// What happened to one SKU's stock. Each event carries the levels it left behind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum InventoryEvent {
    /// Units arrived.
    Restocked { quantity: i64, levels: StockLevels },
    /// On hand was corrected.
    Adjusted {
        delta: i64,
        reason: String,
        levels: StockLevels,
    },
    /// Units were held for an order.
    Reserved {
        order_id: OrderId,
        quantity: i64,
        levels: StockLevels,
    },
    /// An order's held units were given back.
    Released {
        order_id: OrderId,
        quantity: i64,
        levels: StockLevels,
    },
    /// An order's held units were sold: they left `reserved` and `on_hand`.
    Committed {
        order_id: OrderId,
        quantity: i64,
        levels: StockLevels,
    },
    /// A cancelled order's sold units came back on hand.
    Restored {
        order_id: OrderId,
        quantity: i64,
        levels: StockLevels,
    },
    /// An order's sale became final (delivered, and its return window closed): its commitment
    /// is forgotten. The levels do not change.
    Settled {
        order_id: OrderId,
        quantity: i64,
        levels: StockLevels,
    },
}

crate::domain_event!(InventoryEvent for crate::inventory::Inventory {
    Restocked,
    Adjusted,
    Reserved,
    Released,
    Committed,
    Restored,
    Settled
});

use crate::OrderId;

/// Commands on one SKU's stock.
#[derive(Debug, Clone, PartialEq)]
pub enum InventoryCommand {
    /// Goods arrived: `quantity` more units on hand (at least 1).
    Restock { quantity: i64 },
    /// A correction (stock-take, damage): on hand changes by `delta`, never below what is reserved.
    Adjust { delta: i64, reason: String },
    /// Hold `quantity` units for an order. A second reservation for the same order is a no-op;
    /// one after the order's hold was released is refused.
    Reserve { order_id: OrderId, quantity: i64 },
    /// Give an order's held units back. A no-op when the order holds none.
    Release { order_id: OrderId },
    /// The order was confirmed: its held units leave `reserved` and `on_hand`.
    Commit { order_id: OrderId },
    /// A confirmed order was cancelled before shipping: its units return to `on_hand`.
    Restore { order_id: OrderId },
    /// The order can no longer be cancelled or returned: forget its commitment. A no-op when
    /// the SKU holds none for it.
    Settle { order_id: OrderId },
}

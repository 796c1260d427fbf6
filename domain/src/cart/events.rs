use serde::{Deserialize, Serialize};

use crate::order::OrderLine;
use crate::{AccountId, Money, OrderId, ProductId, Sku};

/// What happened to a buyer's cart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum CartEvent {
    /// A line now holds `quantity` units priced at `unit_price`.
    ItemQuantitySet {
        sku: Sku,
        product_id: ProductId,
        seller_id: AccountId,
        quantity: u32,
        unit_price: Money,
    },
    /// A line left the cart.
    ItemRemoved { sku: Sku },
    /// A line left the cart for the wishlist.
    ItemMovedToWishlist { sku: Sku },
    /// A SKU was added to the wishlist.
    WishlistItemAdded { sku: Sku },
    /// A SKU left the wishlist.
    WishlistItemRemoved { sku: Sku },
    /// The cart was closed into an order; the next command opens a new, empty cart. Version 2
    /// dropped the shipping address: the order holds it, sealed (personal data is kept once).
    CheckedOut {
        order_id: OrderId,
        lines: Vec<OrderLine>,
        total: Money,
    },
    /// The lines of checkout `order_id` came back into the cart, its order having failed or been
    /// cancelled. `lines` holds each restored line as the cart now has it (a SKU the buyer had
    /// carted again meanwhile keeps the larger of the two quantities); `wishlisted` the SKUs that
    /// could not rejoin the cart (priced in another currency than the cart's lines now, or the
    /// cart full), put on the wishlist instead.
    CartRestored {
        order_id: OrderId,
        lines: Vec<OrderLine>,
        wishlisted: Vec<Sku>,
    },
}

crate::domain_event!(CartEvent for crate::cart::Cart {
    ItemQuantitySet,
    ItemRemoved,
    ItemMovedToWishlist,
    WishlistItemAdded,
    WishlistItemRemoved,
    CheckedOut,
    CartRestored,
});

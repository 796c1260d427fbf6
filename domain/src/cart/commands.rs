use serde::{Deserialize, Serialize};

use crate::order::OrderLine;
use crate::{AccountId, Money, OrderId, ProductId, Sku};

/// What the catalog says of a SKU at the time of the command, resolved by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogItem {
    pub sku: Sku,
    pub product_id: ProductId,
    pub seller_id: AccountId,
    pub unit_price: Money,
    pub listed: bool,
    /// The SKU is the parent of a product that has variants, and has no stock of its own: only
    /// its variants can be bought.
    #[serde(default)]
    pub variants_only: bool,
}

/// Commands a buyer sends to their cart.
#[derive(Debug, Clone, PartialEq)]
pub enum CartCommand {
    /// Set a line's quantity; 0 removes the line. `item` is `None` when the SKU is unknown.
    SetQuantity {
        sku: Sku,
        quantity: u32,
        item: Option<CatalogItem>,
    },
    /// Remove a line.
    RemoveItem { sku: Sku },
    /// Move a line from the cart to the wishlist.
    MoveToWishlist { sku: Sku },
    /// Add a SKU to the wishlist. `item` is `None` when the SKU is unknown.
    AddToWishlist { sku: Sku, item: Option<CatalogItem> },
    /// Remove a SKU from the wishlist.
    RemoveFromWishlist { sku: Sku },
    /// Close the cart into an order. `catalog` holds the current catalog entry of each line's SKU
    /// (`None` when it no longer exists), so the order is priced at today's prices.
    Checkout {
        order_id: OrderId,
        catalog: Vec<(Sku, Option<CatalogItem>)>,
    },
    /// Give the buyer back the lines of a checkout whose order failed or was cancelled (sent by
    /// the checkout saga's compensation). Once per order: a repeat changes nothing.
    Restore {
        order_id: OrderId,
        lines: Vec<OrderLine>,
    },
}

impl CartCommand {
    /// The order lines a successful checkout produces, in SKU order.
    pub(crate) fn priced_lines(
        lines: impl Iterator<Item = (Sku, u32)>,
        catalog: &[(Sku, Option<CatalogItem>)],
    ) -> Result<Vec<OrderLine>, Sku> {
        lines
            .map(|(sku, quantity)| {
                let item = catalog
                    .iter()
                    .find(|(s, _)| *s == sku)
                    .and_then(|(_, item)| item.as_ref())
                    .filter(|item| item.listed)
                    .ok_or_else(|| sku.clone())?;
                Ok(OrderLine {
                    sku,
                    product_id: item.product_id,
                    seller_id: item.seller_id,
                    quantity,
                    unit_price: item.unit_price,
                })
            })
            .collect()
    }
}

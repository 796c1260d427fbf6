//! The shapes of the response bodies the command routes build as JSON values (`product_view`,
//! `cart_view`, the order and review replies), for the OpenAPI document. Nothing constructs
//! these types: they describe what the handlers write, and the schemathesis run of `make test`
//! checks every response against them.

use commerce_domain::order::OrderStatus;
use commerce_domain::product::Variant;
use commerce_domain::{AccountId, Money, OrderId, ProductId, Sku};
use serde::Serialize;
use utoipa::ToSchema;

/// A product as the write side knows it after a change.
#[derive(Serialize, ToSchema)]
pub struct ProductView {
    pub product_id: ProductId,
    pub seller_id: AccountId,
    pub sku: Sku,
    pub name: String,
    pub description: String,
    pub price: Money,
    pub category: String,
    /// Free-form: size, colour, flavour…
    #[schema(value_type = Object)]
    pub attributes: serde_json::Value,
    pub variants: Vec<Variant>,
    /// `false` once delisted.
    pub listed: bool,
}

/// One line of the cart.
#[derive(Serialize, ToSchema)]
pub struct CartLine {
    pub sku: Sku,
    pub product_id: ProductId,
    pub quantity: i64,
    pub unit_price: Money,
    /// `unit_price` × `quantity` (absent only if that overflows).
    pub line_total: Option<Money>,
}

/// The cart (and wishlist) after a change.
#[derive(Serialize, ToSchema)]
pub struct CartView {
    pub items: Vec<CartLine>,
    /// The sum of the lines; `null` for an empty cart.
    pub total: Option<Money>,
    /// SKUs on the wishlist.
    pub wishlist: Vec<Sku>,
}

/// An order after a step (cancel, ship, deliver, return).
#[derive(Serialize, ToSchema)]
pub struct OrderChanged {
    pub order_id: OrderId,
    pub status: OrderStatus,
    pub cancellation_reason: Option<String>,
}

/// A review, once written.
#[derive(Serialize, ToSchema)]
pub struct ReviewWritten {
    pub product_id: ProductId,
    /// 1 to 5.
    pub rating: u8,
}

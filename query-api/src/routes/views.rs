//! The shapes of the response bodies the read routes build as JSON values, for the OpenAPI
//! document. Nothing constructs these types: they describe what the handlers write, and the
//! schemathesis run of `make test` checks every response against them.

use chrono::{DateTime, Utc};
use commerce_domain::product::Variant;
use commerce_domain::{AccountId, Money, OrderId, ProductId, Sku};
use serde::Serialize;
use utoipa::ToSchema;

/// Stock of one SKU of a product, as `GET /v1/products/{id}` shows it.
#[derive(Serialize, ToSchema)]
pub struct SkuAvailability {
    pub available: i64,
    pub in_stock: bool,
}

/// A product's reviews in short.
#[derive(Serialize, ToSchema)]
pub struct RatingSummary {
    pub count: i64,
    /// The mean rating to one decimal; `null` before the first review.
    pub average: Option<f64>,
}

/// A product with its variants, stock and rating.
#[derive(Serialize, ToSchema)]
pub struct ProductDetail {
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
    pub listed: bool,
    /// By SKU (the product's and each variant's).
    pub availability: std::collections::BTreeMap<String, SkuAvailability>,
    pub rating: RatingSummary,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A SKU's stock levels.
#[derive(Serialize, ToSchema)]
pub struct StockLevels {
    pub sku: Sku,
    /// In stock, not sold to a confirmed order.
    pub on_hand: i64,
    /// Held for checkouts in progress.
    pub reserved: i64,
    /// `on_hand` − `reserved`.
    pub available: i64,
}

/// One line of the buyer's cart, with what is in stock.
#[derive(Serialize, ToSchema)]
pub struct StockedCartLine {
    pub sku: Sku,
    pub product_id: ProductId,
    pub quantity: i64,
    pub unit_price: Money,
    /// `unit_price` × `quantity` (absent only if that overflows).
    pub line_total: Option<Money>,
    /// Units of the SKU available now (on hand, not held for a checkout); the line may ask
    /// for more: then `warnings[]` says so.
    pub available: i64,
}

/// Why a line of the cart cannot be sold as it stands.
#[derive(Serialize, ToSchema)]
pub struct CartWarning {
    pub sku: Sku,
    /// `insufficient_stock` or `not_for_sale`.
    pub code: String,
    pub detail: String,
    /// With `insufficient_stock`: the quantity asked for and the units available.
    pub quantity: Option<i64>,
    pub available: Option<i64>,
}

/// The buyer's open cart.
#[derive(Serialize, ToSchema)]
pub struct Cart {
    pub items: Vec<StockedCartLine>,
    /// The sum of the lines; `null` for an empty cart.
    pub total: Option<Money>,
    /// One per line that cannot be sold as it stands.
    pub warnings: Vec<CartWarning>,
}

/// A SKU on the wishlist.
#[derive(Serialize, ToSchema)]
pub struct WishlistItem {
    pub sku: Sku,
}

/// The buyer's wishlist.
#[derive(Serialize, ToSchema)]
pub struct Wishlist {
    pub items: Vec<WishlistItem>,
}

/// Why a product is recommended.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    BoughtTogether,
    Popular,
}

/// A recommended product.
#[derive(Serialize, ToSchema)]
pub struct Recommended {
    pub product_id: ProductId,
    pub sku: Sku,
    pub name: String,
    pub price: Money,
    /// Units ordered recently (popular products).
    pub units_ordered: Option<i64>,
    /// For this buyer's recommendations only.
    pub reason: Option<Reason>,
}

/// Recommended products, best first.
#[derive(Serialize, ToSchema)]
pub struct Recommendations {
    pub items: Vec<Recommended>,
}

/// An order's payment.
#[derive(Serialize, ToSchema)]
pub struct PaymentRead {
    pub payment_id: uuid::Uuid,
    pub order_id: OrderId,
    /// `pending`, `authorized`, `captured`, `declined`, `voided`, `refunded`…
    pub status: String,
    pub amount: Money,
    /// Every step, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub history: serde_json::Value,
    pub updated_at: DateTime<Utc>,
}

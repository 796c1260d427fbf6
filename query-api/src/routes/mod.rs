//! The read routes, one file per resource, and their OpenAPI description.

pub mod accounts;
pub mod catalog;
pub mod me;
pub mod orders;
pub mod seller;
pub mod views;

use axum::routing::get;
use axum::Router;
use utoipa::OpenApi;

use crate::QueryState;

/// The names of the projections, as the routes wait on them.
pub mod projections {
    pub const CARTS: &str = "carts";
    pub const ORDERS: &str = "orders";
    pub const INVENTORY: &str = "inventory";
    pub const CATALOG: &str = "catalog";
    pub const REVIEWS: &str = "reviews";
    pub const PAYMENTS: &str = "payments";
    pub const NOTIFICATIONS: &str = "notifications";
    pub const RECOMMENDATIONS: &str = "recommendations";
    pub const ACCOUNTS: &str = "accounts";
}

/// Every GET route of API.md but the admin ones.
pub fn router(state: QueryState) -> Router {
    Router::new()
        .route("/v1/products", get(catalog::search))
        .route("/v1/products/{id}", get(catalog::product))
        .route("/v1/products/{id}/reviews", get(catalog::reviews))
        .route("/v1/categories", get(catalog::categories))
        .route("/v1/inventory/{sku}", get(catalog::inventory))
        .route("/v1/recommendations", get(catalog::recommendations))
        .route("/v1/me/cart", get(me::cart))
        .route("/v1/me/wishlist", get(me::wishlist))
        .route("/v1/me/orders", get(me::orders))
        .route("/v1/me/notifications", get(me::notifications))
        .route("/v1/me/recommendations", get(me::recommendations))
        .route("/v1/orders/{id}", get(orders::order))
        .route("/v1/orders/{id}/payment", get(orders::payment))
        .route("/v1/seller/orders", get(orders::seller_orders))
        .route("/v1/me", get(accounts::me))
        .route("/v1/accounts/{id}", get(accounts::account))
        .route("/v1/products/by-sku/{sku}", get(catalog::by_sku))
        .route("/v1/seller/products", get(seller::products))
        .with_state(state)
}

/// The OpenAPI description of the read routes.
#[derive(OpenApi)]
#[openapi(paths(
    catalog::search,
    catalog::product,
    catalog::reviews,
    catalog::categories,
    catalog::inventory,
    catalog::recommendations,
    me::cart,
    me::wishlist,
    me::orders,
    me::notifications,
    me::recommendations,
    orders::order,
    orders::payment,
    orders::seller_orders,
    accounts::me,
    accounts::account,
    catalog::by_sku,
    seller::products,
))]
pub struct ApiDoc;

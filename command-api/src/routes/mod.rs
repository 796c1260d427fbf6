//! The command routes, one file per resource, and their OpenAPI description.

pub mod accounts;
pub mod cart;
pub mod inventory;
pub mod orders;
pub mod privacy;
pub mod products;
pub mod reviews;
pub mod views;

use axum::routing::{delete, patch, post, put};
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::CommandState;

/// Every command route of API.md but the admin ones.
pub fn router(state: CommandState) -> Router {
    Router::new()
        .route("/v1/accounts", post(accounts::register))
        .route("/v1/auth/token", post(accounts::token))
        .route("/v1/me/password", post(accounts::change_password))
        .route("/v1/products", post(products::create))
        .route("/v1/products/import", post(products::import))
        .route(
            "/v1/products/{id}",
            patch(products::update).delete(products::delist),
        )
        .route("/v1/products/{id}/reviews", post(reviews::write))
        .route("/v1/inventory/{sku}/restock", post(inventory::restock))
        .route("/v1/inventory/{sku}/adjust", post(inventory::adjust))
        .route(
            "/v1/me/cart/items/{sku}",
            put(cart::set_quantity).delete(cart::remove_item),
        )
        .route(
            "/v1/me/cart/items/{sku}/move-to-wishlist",
            post(cart::move_to_wishlist),
        )
        .route(
            "/v1/me/wishlist/items/{sku}",
            put(cart::add_to_wishlist).delete(cart::remove_from_wishlist),
        )
        .route("/v1/me/cart/checkout", post(cart::checkout))
        .route("/v1/orders/{id}/cancel", post(orders::cancel))
        .route("/v1/orders/{id}/shipments", post(orders::ship))
        .route("/v1/orders/{id}/delivery", post(orders::deliver))
        .route("/v1/orders/{id}/returns", post(orders::return_order))
        .route("/v1/me", delete(privacy::forget_me))
        .route(
            "/v1/admin/accounts/{id}/forget",
            post(privacy::forget_account),
        )
        .with_state(state)
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The OpenAPI description of the command routes.
#[derive(OpenApi)]
#[openapi(
    modifiers(&BearerAuth),
    paths(
        accounts::register, accounts::token, accounts::change_password,
        products::create, products::update, products::delist, products::import, reviews::write,
        inventory::restock, inventory::adjust,
        cart::set_quantity, cart::remove_item, cart::move_to_wishlist, cart::add_to_wishlist,
        cart::remove_from_wishlist, cart::checkout,
        orders::cancel, orders::ship, orders::deliver, orders::return_order,
        privacy::forget_me, privacy::forget_account,
    ),
    components(schemas(commerce_http::problem::Problem))
)]
pub struct ApiDoc;

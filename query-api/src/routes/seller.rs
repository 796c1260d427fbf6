//! The seller's own catalog: every product it created, listed or delisted.

use chrono::{DateTime, Utc};
use commerce_domain::Role;
use commerce_http::page::{Page, PageParams};
use commerce_http::{ApiError, ApiQuery, Caller};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::FromRow;
use utoipa::ToSchema;

use super::projections::CATALOG;
use crate::consistency::MinPosition;
use crate::Reads;

/// One of the seller's products.
#[derive(Debug, Serialize, FromRow, ToSchema)]
pub struct SellerProduct {
    pub product_id: uuid::Uuid,
    pub sku: String,
    pub name: String,
    #[sqlx(skip)]
    #[schema(value_type = Object)]
    pub price: Value,
    #[serde(skip)]
    price_amount: i64,
    #[serde(skip)]
    currency: String,
    pub category: String,
    #[schema(value_type = Object)]
    pub attributes: Value,
    /// Each with its `sku`, and its own `price` and `attributes`.
    #[schema(value_type = Vec<Object>)]
    pub variants: Value,
    /// `false` once delisted: buyers no longer find it; `PATCH {"listed": true}` puts it back.
    pub listed: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The seller's own products, listed and delisted, newest first.
#[utoipa::path(get, path = "/v1/seller/products", tag = "catalog", security(("bearer" = [])),
    params(PageParams, ("X-Min-Position" = Option<i64>, Header)),
    responses((status = 200, description = "`items[]` and `next_cursor`", body = Page<SellerProduct>),
              (status = 400, description = "invalid `limit` or `cursor`", body = commerce_http::problem::Problem),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "not a seller", body = commerce_http::problem::Problem)))]
pub async fn products(
    state: Reads,
    caller: Caller,
    min: MinPosition,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<axum::Json<Page<SellerProduct>>, ApiError> {
    caller.require(&[Role::Seller])?;
    let (limit, (at, id)) = page.newest_first()?;
    min.wait(&state, &[CATALOG]).await?;
    let mut rows: Vec<SellerProduct> = sqlx::query_as(
        "SELECT product_id, sku, name, price_amount, currency, category, attributes, variants, \
                listed, created_at, updated_at \
         FROM rm_products WHERE seller_id = $1 AND (created_at, product_id) < ($2, $3) \
         ORDER BY created_at DESC, product_id DESC LIMIT $4",
    )
    .bind(caller.account_id.0)
    .bind(at)
    .bind(id)
    .bind(limit + 1)
    .fetch_all(&state.pool)
    .await
    .map_err(|error| state.failed(error))?;
    for row in &mut rows {
        row.price = json!({ "amount": row.price_amount, "currency": row.currency });
    }
    Ok(axum::Json(Page::from_rows(rows, limit, |p| {
        (p.created_at, p.product_id)
    })))
}

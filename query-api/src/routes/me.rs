//! The signed-in account's own things: cart, wishlist, orders, notifications, recommendations.

use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, Utc};
use commerce_domain::Role;
use commerce_http::{ApiError, ApiQuery, Caller};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::FromRow;
use utoipa::ToSchema;

use super::catalog::popular;
use super::orders::{OrderView, ORDER_COLUMNS};
use super::projections::{CARTS, CATALOG, INVENTORY, NOTIFICATIONS, ORDERS, RECOMMENDATIONS};
use crate::consistency::{resource, version, versioned, MinPosition};
use crate::Reads;
use commerce_http::page::{Page, PageParams};

async fn cart_row(state: &Reads, caller: Caller) -> Result<(Value, Value, Value), ApiError> {
    let row: Option<(Value, Option<Value>, Value)> =
        sqlx::query_as("SELECT items, total, wishlist FROM rm_carts WHERE buyer_id = $1")
            .bind(caller.account_id.0)
            .fetch_optional(&state.pool)
            .await
            .map_err(|error| state.failed(error))?;
    Ok(row.map_or(
        (json!([]), Value::Null, json!([])),
        |(items, total, wishlist)| (items, total.unwrap_or(Value::Null), wishlist),
    ))
}

/// Units available now (on hand, not held for a checkout) of each SKU; 0 for one never stocked.
async fn available(
    state: &Reads,
    skus: &[String],
) -> Result<std::collections::HashMap<String, i64>, ApiError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT sku, GREATEST(on_hand - reserved, 0) FROM rm_inventory WHERE sku = ANY($1)",
    )
    .bind(skus)
    .fetch_all(&state.pool)
    .await
    .map_err(|error| state.failed(error))?;
    Ok(rows.into_iter().collect())
}

/// Each line with the units `available` now, and a warning for every line the shop cannot sell
/// as it stands: more than is available (`insufficient_stock`), or its product no longer listed
/// (`not_for_sale`). Such lines are kept: stock may come back, and checkout decides.
async fn with_availability(
    state: &Reads,
    items: Value,
) -> Result<(Vec<Value>, Vec<Value>), ApiError> {
    let mut items: Vec<Value> = serde_json::from_value(items).unwrap_or_default();
    let skus: Vec<String> = items
        .iter()
        .filter_map(|item| item["sku"].as_str().map(str::to_owned))
        .collect();
    let products: Vec<uuid::Uuid> = items
        .iter()
        .filter_map(|item| item["product_id"].as_str()?.parse().ok())
        .collect();
    let stock = available(state, &skus).await?;
    let delisted: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT product_id FROM rm_products WHERE product_id = ANY($1) AND NOT listed",
    )
    .bind(&products)
    .fetch_all(&state.pool)
    .await
    .map_err(|error| state.failed(error))?;
    let mut warnings = Vec::new();
    for item in &mut items {
        let sku = item["sku"].as_str().unwrap_or_default().to_owned();
        let quantity = item["quantity"].as_i64().unwrap_or(0);
        let available = stock.get(&sku).copied().unwrap_or(0);
        item["available"] = json!(available);
        let product: Option<uuid::Uuid> = item["product_id"].as_str().and_then(|p| p.parse().ok());
        if product.is_some_and(|p| delisted.contains(&p)) {
            warnings.push(json!({
                "sku": sku, "code": "not_for_sale",
                "detail": format!("{sku} is no longer for sale; remove it to check out"),
            }));
        } else if quantity > available {
            warnings.push(json!({
                "sku": sku, "code": "insufficient_stock", "quantity": quantity, "available": available,
                "detail": format!("only {available} of the {quantity} units of {sku} in the cart are available"),
            }));
        }
    }
    Ok((items, warnings))
}

/// The buyer's open cart, kept across sessions until checkout.
#[utoipa::path(get, path = "/v1/me/cart", tag = "me", security(("bearer" = [])),
    params(("X-Min-Position" = Option<i64>, Header), ("If-None-Match" = Option<String>, Header)),
    responses((status = 200, description = "the cart: `items[]` (each with `available`), `total`, `warnings[]` (`insufficient_stock` or `not_for_sale`) for lines that cannot be sold as they stand; `ETag` `\"<version>.<digest>\"`, accepted by `If-Match` on the cart's commands", body = crate::routes::views::Cart),
              (status = 403, description = "not a buyer", body = commerce_http::problem::Problem)))]
pub async fn cart(
    state: Reads,
    caller: Caller,
    min: MinPosition,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Buyer])?;
    min.wait(&state, &[CARTS, INVENTORY, CATALOG]).await?;
    let version = version(&state, CARTS, "cart", &caller.account_id.to_string()).await?;
    let (items, total, _) = cart_row(&state, caller).await?;
    let (items, warnings) = with_availability(&state, items).await?;
    Ok(versioned(
        &headers,
        version,
        &json!({ "items": items, "total": total, "warnings": warnings }),
    ))
}

/// The buyer's wishlist.
#[utoipa::path(get, path = "/v1/me/wishlist", tag = "me", security(("bearer" = [])),
    params(("X-Min-Position" = Option<i64>, Header), ("If-None-Match" = Option<String>, Header)),
    responses((status = 200, description = "the wishlist", body = crate::routes::views::Wishlist),
              (status = 403, description = "not a buyer", body = commerce_http::problem::Problem)))]
pub async fn wishlist(
    state: Reads,
    caller: Caller,
    min: MinPosition,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Buyer])?;
    min.wait(&state, &[CARTS]).await?;
    let (_, _, wishlist) = cart_row(&state, caller).await?;
    let items: Vec<Value> = wishlist
        .as_array()
        .into_iter()
        .flatten()
        .map(|sku| json!({ "sku": sku }))
        .collect();
    Ok(resource(&headers, &json!({ "items": items })))
}

/// The buyer's purchase history, newest first.
#[utoipa::path(get, path = "/v1/me/orders", tag = "me", security(("bearer" = [])),
    params(PageParams, ("X-Min-Position" = Option<i64>, Header)),
    responses((status = 200, description = "orders", body = Page<OrderView>),
              (status = 403, description = "not a buyer", body = commerce_http::problem::Problem)))]
pub async fn orders(
    state: Reads,
    caller: Caller,
    min: MinPosition,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<axum::Json<Value>, ApiError> {
    caller.require(&[Role::Buyer])?;
    min.wait(&state, &[ORDERS]).await?;
    let (limit, (at, id)) = page.newest_first()?;
    let rows: Vec<OrderView> = sqlx::query_as(&format!(
        "SELECT {ORDER_COLUMNS} FROM rm_orders WHERE buyer_id = $1 AND (placed_at, order_id) < ($2, $3) \
         ORDER BY placed_at DESC, order_id DESC LIMIT $4"
    ))
    .bind(caller.account_id.0)
    .bind(at)
    .bind(id)
    .bind(limit + 1)
    .fetch_all(&state.pool)
    .await
    .map_err(|error| state.failed(error))?;
    let page = Page::from_rows(rows, limit, |o| (o.placed_at, o.order_id));
    Ok(axum::Json(state.reveal(&page).await?))
}

/// A notification.
#[derive(Debug, Serialize, FromRow, ToSchema)]
pub struct NotificationView {
    pub notification_id: i64,
    /// `order_placed`, `order_confirmed`, `payment_failed`, `order_cancelled`, `order_shipped`, …
    pub kind: String,
    pub order_id: Option<uuid::Uuid>,
    pub message: String,
    /// Where the order goes, on `order_placed` and `order_shipped`; `"forgotten"` once the
    /// buyer asked to be forgotten.
    #[schema(value_type = Option<Object>)]
    pub ship_to: Option<Value>,
    pub created_at: DateTime<Utc>,
}

/// The account's notifications, newest first.
#[utoipa::path(get, path = "/v1/me/notifications", tag = "me", security(("bearer" = [])),
    params(PageParams, ("X-Min-Position" = Option<i64>, Header)),
    responses((status = 200, description = "notifications", body = Page<NotificationView>)))]
pub async fn notifications(
    state: Reads,
    caller: Caller,
    min: MinPosition,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<axum::Json<Value>, ApiError> {
    min.wait(&state, &[NOTIFICATIONS]).await?;
    let (limit, cursor) = page.read::<i64>()?;
    let before = cursor.unwrap_or(i64::MAX);
    let rows: Vec<NotificationView> = sqlx::query_as(
        "SELECT notification_id, kind, order_id, message, ship_to, created_at FROM rm_notifications \
         WHERE account_id = $1 AND notification_id < $2 ORDER BY notification_id DESC LIMIT $3",
    )
    .bind(caller.account_id.0)
    .bind(before)
    .bind(limit + 1)
    .fetch_all(&state.pool)
    .await
    .map_err(|error| state.failed(error))?;
    let page = Page::from_rows(rows, limit, |n| n.notification_id);
    Ok(axum::Json(state.reveal(&page).await?))
}

/// For this buyer: products bought together with what they bought or carted, then popular ones.
#[utoipa::path(get, path = "/v1/me/recommendations", tag = "me", security(("bearer" = [])),
    params(("X-Min-Position" = Option<i64>, Header)),
    responses((status = 200, description = "products bought together with what the buyer bought or carted, then popular ones; each with its `reason`", body = crate::routes::views::Recommendations),
              (status = 403, description = "not a buyer", body = commerce_http::problem::Problem)))]
pub async fn recommendations(
    state: Reads,
    caller: Caller,
    min: MinPosition,
) -> Result<axum::Json<Value>, ApiError> {
    caller.require(&[Role::Buyer])?;
    min.wait(&state, &[RECOMMENDATIONS, CATALOG]).await?;
    const LIMIT: i64 = 10;
    let together: Vec<(uuid::Uuid, String, String, i64, String, i64)> = sqlx::query_as(
        "SELECT p.product_id, p.sku, p.name, p.price_amount, p.currency, sum(t.orders)::bigint AS strength \
         FROM rm_buyer_products mine JOIN rm_bought_together t ON t.product_id = mine.product_id \
         JOIN rm_products p ON p.product_id = t.other_id \
         WHERE mine.buyer_id = $1 AND p.listed \
           AND t.other_id NOT IN (SELECT product_id FROM rm_buyer_products WHERE buyer_id = $1 AND source = 'bought') \
         GROUP BY p.product_id ORDER BY strength DESC, p.product_id LIMIT $2",
    )
    .bind(caller.account_id.0)
    .bind(LIMIT)
    .fetch_all(&state.pool)
    .await
    .map_err(|error| state.failed(error))?;
    let mut seen: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT product_id FROM rm_buyer_products WHERE buyer_id = $1 AND source = 'bought'",
    )
    .bind(caller.account_id.0)
    .fetch_all(&state.pool)
    .await
    .map_err(|error| state.failed(error))?;
    let mut items: Vec<Value> = together
        .into_iter()
        .map(|(product_id, sku, name, amount, currency, _)| {
            seen.push(product_id);
            json!({ "product_id": product_id, "sku": sku, "name": name, "price": { "amount": amount, "currency": currency }, "reason": "bought_together" })
        })
        .collect();
    let remaining = LIMIT - items.len() as i64;
    if remaining > 0 {
        for mut product in popular(&state, None, &seen, remaining).await? {
            product["reason"] = json!("popular");
            items.push(product);
        }
    }
    Ok(axum::Json(json!({ "items": items })))
}

//! Orders: one order with its timeline, its payment, and the sellers' queue.
//!
//! Least privilege: the buyer and admins see the whole order; a seller of some of its lines sees
//! only what it needs to ship them ([`SellerOrderView`]): its own lines and their total, never
//! the other sellers' lines nor the order's amounts, which would tell what they sold.

use anyhow::Context;
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, Utc};
use commerce_domain::order::{OrderLine, OrderStatus};
use commerce_domain::{AccountId, Money, OrderId, Role};
use commerce_http::{ApiError, ApiPath, ApiQuery, Caller};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::FromRow;
use utoipa::{IntoParams, ToSchema};

use super::projections::{ORDERS, PAYMENTS};
use crate::consistency::{resource, version, versioned, MinPosition};
use crate::Reads;
use commerce_http::page::{Page, PageParams};

/// An order as the read model holds it.
#[derive(Debug, Serialize, FromRow, ToSchema)]
pub struct OrderView {
    pub order_id: uuid::Uuid,
    pub buyer_id: uuid::Uuid,
    /// `pending`, `reserved`, `authorized`, `confirmed`, `shipped`, `delivered`, `returned`, `refunded` or `cancelled`.
    pub status: String,
    #[schema(value_type = Vec<Object>)]
    pub lines: Value,
    /// The price breakdown: `total = subtotal − discount + shipping + tax`, each money.
    #[schema(value_type = Object)]
    pub subtotal: Value,
    #[schema(value_type = Object)]
    pub discount: Value,
    #[schema(value_type = Object)]
    pub shipping: Value,
    #[schema(value_type = Object)]
    pub tax: Value,
    #[schema(value_type = Object)]
    pub total: Value,
    /// The promotion applied at checkout, if any.
    pub promotion_code: Option<String>,
    /// The shipping method chosen at checkout, if any.
    pub shipping_method_id: Option<uuid::Uuid>,
    /// Every status change: `status`, `at`.
    #[schema(value_type = Vec<Object>)]
    pub timeline: Value,
    pub cancellation_reason: Option<String>,
    #[schema(value_type = Object)]
    pub shipping_address: Value,
    #[schema(value_type = Option<Object>)]
    pub shipment: Option<Value>,
    pub placed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip)]
    pub seller_ids: Vec<uuid::Uuid>,
}

pub(crate) const ORDER_COLUMNS: &str =
    "order_id, buyer_id, status, lines, subtotal, discount, shipping, tax, total, \
     promotion_code, shipping_method_id, timeline, cancellation_reason, \
     shipping_address, shipment, placed_at, updated_at, seller_ids";

/// An order as a seller of some of its lines sees it: only those lines, their total, and what it
/// needs to ship them. The other sellers' lines and the order's price breakdown (subtotal,
/// discount, shipping, tax, total) are left out, and so is the buyer's id.
#[derive(Debug, Serialize, ToSchema)]
pub struct SellerOrderView {
    pub order_id: uuid::Uuid,
    /// As in the whole order.
    pub status: String,
    /// The seller's own lines only.
    pub lines: Vec<OrderLine>,
    /// The sum of the seller's own lines (money), not the order's total.
    pub total: Money,
    /// The shipping method the buyer chose, to ship by it.
    pub shipping_method_id: Option<uuid::Uuid>,
    /// Every status change: `status`, `at`.
    #[schema(value_type = Vec<Object>)]
    pub timeline: Value,
    pub cancellation_reason: Option<String>,
    /// Where to ship.
    #[schema(value_type = Object)]
    pub shipping_address: Value,
    #[schema(value_type = Option<Object>)]
    pub shipment: Option<Value>,
    pub placed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl SellerOrderView {
    /// What `seller` may see of `order`.
    fn of(order: OrderView, seller: AccountId) -> anyhow::Result<Self> {
        let lines: Vec<OrderLine> =
            serde_json::from_value(order.lines).context("reading an order's lines")?;
        let own: Vec<OrderLine> = lines
            .into_iter()
            .filter(|line| line.seller_id == seller)
            .collect();
        let currency = own
            .first()
            .context("a seller of an order has a line in it")?
            .unit_price
            .currency;
        let total = own
            .iter()
            .try_fold(Money::zero(currency), |sum, line| {
                sum.plus(line.unit_price.times(line.quantity)?)
            })
            .context("the seller's lines overflow their total")?;
        Ok(Self {
            order_id: order.order_id,
            status: order.status,
            lines: own,
            total,
            shipping_method_id: order.shipping_method_id,
            timeline: order.timeline,
            cancellation_reason: order.cancellation_reason,
            shipping_address: order.shipping_address,
            shipment: order.shipment,
            placed_at: order.placed_at,
            updated_at: order.updated_at,
        })
    }
}

/// An order as its reader may see it: whole for its buyer and admins, a seller's part for a
/// seller of some of its lines.
// One is built per request and serialised at once: boxing the larger would save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum OrderRead {
    Whole(OrderView),
    Seller(SellerOrderView),
}

/// The order if `caller` may see it: its buyer, an admin, or a seller of one of its lines.
/// Anyone else is told it does not exist.
async fn visible_order(
    state: &Reads,
    caller: Caller,
    id: OrderId,
    sellers_too: bool,
) -> Result<OrderView, ApiError> {
    let order: Option<OrderView> = sqlx::query_as(&format!(
        "SELECT {ORDER_COLUMNS} FROM rm_orders WHERE order_id = $1"
    ))
    .bind(id.0)
    .fetch_optional(&state.pool)
    .await
    .map_err(|error| state.failed(error))?;
    let visible = order.filter(|o| {
        caller.is_admin()
            || o.buyer_id == caller.account_id.0
            || (sellers_too
                && caller.role == Role::Seller
                && o.seller_ids.contains(&caller.account_id.0))
    });
    visible.ok_or_else(|| ApiError::not_found(format!("order {id} does not exist")))
}

/// An order with its status and the timeline of every step. Its buyer and admins see the whole
/// order; a seller of some of its lines sees only those lines and their total, with the status,
/// timeline and shipping address (`SellerOrderView`): never the other sellers' lines nor the
/// order's subtotal, discount, shipping, tax or total.
#[utoipa::path(get, path = "/v1/orders/{id}", tag = "orders", security(("bearer" = [])),
    params(("id" = OrderId, Path), ("X-Min-Position" = Option<i64>, Header), ("If-None-Match" = Option<String>, Header)),
    responses((status = 200, description = "the order: whole (`OrderView`) for its buyer and admins, the seller's part (`SellerOrderView`) for a seller; `ETag` `\"<version>.<digest>\"`, accepted by `If-Match` on the order's commands", body = OrderRead),
              (status = 304, description = "unchanged since the ETag sent in If-None-Match"),
              (status = 404, description = "no such order, or not yours", body = commerce_http::problem::Problem)))]
pub async fn order(
    state: Reads,
    caller: Caller,
    min: MinPosition,
    headers: HeaderMap,
    ApiPath(id): ApiPath<OrderId>,
) -> Result<Response, ApiError> {
    min.wait(&state, &[ORDERS]).await?;
    let version = version(&state, ORDERS, "order", &id.to_string()).await?;
    let order = visible_order(&state, caller, id, true).await?;
    let order = if caller.is_admin() || order.buyer_id == caller.account_id.0 {
        OrderRead::Whole(order)
    } else {
        OrderRead::Seller(SellerOrderView::of(order, caller.account_id)?)
    };
    Ok(versioned(&headers, version, &state.reveal(&order).await?))
}

/// The order's payment and its history.
#[utoipa::path(get, path = "/v1/orders/{id}/payment", tag = "orders", security(("bearer" = [])),
    params(("id" = OrderId, Path), ("X-Min-Position" = Option<i64>, Header), ("If-None-Match" = Option<String>, Header)),
    responses((status = 200, description = "the payment and its history", body = crate::routes::views::PaymentRead),
              (status = 404, description = "no such order, not yours, or no payment yet", body = commerce_http::problem::Problem)))]
pub async fn payment(
    state: Reads,
    caller: Caller,
    min: MinPosition,
    headers: HeaderMap,
    ApiPath(id): ApiPath<OrderId>,
) -> Result<Response, ApiError> {
    min.wait(&state, &[ORDERS, PAYMENTS]).await?;
    visible_order(&state, caller, id, false).await?;
    let row: Option<(uuid::Uuid, String, Value, Value, DateTime<Utc>)> =
        sqlx::query_as("SELECT payment_id, status, amount, history, updated_at FROM rm_payments WHERE order_id = $1")
            .bind(id.0)
            .fetch_optional(&state.pool)
            .await
            .map_err(|error| state.failed(error))?;
    let (payment_id, status, amount, history, updated_at) =
        row.ok_or_else(|| ApiError::not_found(format!("order {id} has no payment yet")))?;
    let body = json!({ "payment_id": payment_id, "order_id": id, "status": status, "amount": amount, "history": history, "updated_at": updated_at });
    Ok(resource(&headers, &body))
}

/// `?status=` narrows the seller's orders.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SellerOrderParams {
    /// Only orders in this status.
    #[param(inline)]
    pub status: Option<OrderStatus>,
    /// Items per page: default 20, at most 100.
    #[serde(default, deserialize_with = "commerce_http::page::deserialize_limit")]
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[serde(default, deserialize_with = "commerce_http::page::deserialize_cursor")]
    pub cursor: Option<String>,
}

/// Orders holding the seller's lines, newest first, to ship them. Each shows only the seller's
/// own lines and their total (`SellerOrderView`), never the other sellers' lines nor the order's
/// amounts.
#[utoipa::path(get, path = "/v1/seller/orders", tag = "orders", security(("bearer" = [])),
    params(SellerOrderParams, ("X-Min-Position" = Option<i64>, Header)),
    responses((status = 200, description = "the seller's part of each order", body = Page<SellerOrderView>),
              (status = 400, description = "invalid `status`, `limit` or `cursor`: every one named in `errors[]`", body = commerce_http::problem::Problem),
              (status = 403, description = "not a seller", body = commerce_http::problem::Problem)))]
pub async fn seller_orders(
    state: Reads,
    caller: Caller,
    min: MinPosition,
    ApiQuery(params): ApiQuery<SellerOrderParams>,
) -> Result<axum::Json<Value>, ApiError> {
    caller.require(&[Role::Seller])?;
    min.wait(&state, &[ORDERS]).await?;
    let page = PageParams {
        limit: params.limit,
        cursor: params.cursor,
    };
    let (limit, (at, id)) = page.newest_first()?;
    let rows: Vec<OrderView> = sqlx::query_as(&format!(
        "SELECT {ORDER_COLUMNS} FROM rm_orders WHERE seller_ids @> ARRAY[$1]::uuid[] \
         AND ($2::text IS NULL OR status = $2) AND (placed_at, order_id) < ($3, $4) \
         ORDER BY placed_at DESC, order_id DESC LIMIT $5"
    ))
    .bind(caller.account_id.0)
    .bind(params.status.map(OrderStatus::as_str))
    .bind(at)
    .bind(id)
    .bind(limit + 1)
    .fetch_all(&state.pool)
    .await
    .map_err(|error| state.failed(error))?;
    let page = Page::from_rows(rows, limit, |o| (o.placed_at, o.order_id));
    let page = Page {
        items: page
            .items
            .into_iter()
            .map(|order| SellerOrderView::of(order, caller.account_id))
            .collect::<anyhow::Result<_>>()?,
        next_cursor: page.next_cursor,
    };
    Ok(axum::Json(state.reveal(&page).await?))
}

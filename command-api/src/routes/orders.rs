//! Order steps a person takes: cancel, ship, deliver, return.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use commerce_domain::order::{Order, OrderCommand};
use commerce_domain::{OrderId, Role};
use commerce_http::extract::OptionalJson;
use commerce_http::{ApiError, ApiJson, ApiPath, Caller, RequestContext};
use commerce_store::Claim;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::pipeline::{run, CommandRequest, Reply};
use crate::CommandState;

/// Why the buyer cancels.
#[derive(Debug, Default, eserde::Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    #[serde(default)]
    pub reason: Option<String>,
}

/// How the order travels.
#[derive(Debug, eserde::Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipmentRequest {
    pub carrier: String,
    pub tracking_number: String,
}

/// Why the buyer sends the order back.
#[derive(Debug, Default, eserde::Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnRequest {
    #[serde(default)]
    pub reason: Option<String>,
}

/// Who may act on an order.
enum Party {
    /// The buyer who placed it.
    Owner,
    /// A seller of one of its lines.
    Seller,
}

/// Loads the order and checks the caller is one of `parties` (or an admin). An order the caller
/// may not see is reported as missing, so its existence does not leak.
async fn authorize(
    state: &CommandState,
    caller: Caller,
    id: OrderId,
    parties: &[Party],
) -> Result<Order, ApiError> {
    let order = state.orders.load(&id.to_string()).await?.state;
    let missing = || ApiError::not_found(format!("order {id} does not exist"));
    if order.status.is_none() {
        return Err(missing());
    }
    let allowed = caller.is_admin()
        || parties.iter().any(|party| match party {
            Party::Owner => caller.role == Role::Buyer && order.buyer_id == Some(caller.account_id),
            Party::Seller => caller.role == Role::Seller && order.has_seller(caller.account_id),
        });
    if allowed {
        return Ok(order);
    }
    let involved = order.buyer_id == Some(caller.account_id) || order.has_seller(caller.account_id);
    Err(if involved {
        ApiError::forbidden(format!(
            "this route is for {}; you are signed in as {} {}",
            parties
                .iter()
                .map(|party| match party {
                    Party::Owner => "the order's buyer",
                    Party::Seller => "the sellers of its lines",
                })
                .chain(["admins"])
                .collect::<Vec<_>>()
                .join(" and "),
            if caller.role == Role::Admin {
                "an"
            } else {
                "a"
            },
            caller.role.as_str()
        ))
    } else {
        missing()
    })
}

/// The command request for step `route` of order `id`.
fn order_request(
    context: RequestContext,
    caller: Caller,
    id: OrderId,
    route: &str,
    body: &impl Serialize,
) -> CommandRequest {
    CommandRequest::new(
        context,
        Some(caller),
        &format!("POST /v1/orders/{id}/{route}"),
        body,
    )
}

/// Runs `command` on order `id`, answering with its status.
async fn order_command(
    state: &CommandState,
    request: CommandRequest,
    id: OrderId,
    command: OrderCommand,
    claims: Vec<Claim>,
) -> Result<Reply, ApiError> {
    let respond: commerce_store::Respond<Order> = Arc::new(move |order: &Order| {
        Reply::stored(
            StatusCode::OK,
            Some(json!({
                "order_id": id,
                "status": order.status,
                "cancellation_reason": order.cancellation_reason,
            })),
        )
    });
    run(
        state,
        &state.orders,
        &id.to_string(),
        command,
        &request,
        claims,
        respond,
    )
    .await
}

/// Cancel an order before it ships (its buyer, admins).
#[utoipa::path(post, path = "/v1/orders/{id}/cancel", tag = "orders", request_body(content = CancelRequest, description = "optional"), security(("bearer" = [])),
    params(("id" = OrderId, Path), ("Idempotency-Key" = Option<String>, Header), ("If-Match" = Option<String>, Header, description = "the ETag of a GET of this resource or of a command on it; a stale version is 412")),
    responses(
        (status = 200, description = "cancelled", body = crate::routes::views::OrderChanged),
        (status = 403, description = "neither the buyer nor an admin", body = commerce_http::problem::Problem),
        (status = 404, description = "no such order (or not yours)", body = commerce_http::problem::Problem),
        (status = 409, description = "already shipped or cancelled", body = commerce_http::problem::Problem),
    ))]
pub async fn cancel(
    State(state): State<CommandState>,
    caller: Caller,
    context: RequestContext,
    ApiPath(id): ApiPath<OrderId>,
    body: OptionalJson<CancelRequest>,
) -> Result<Reply, ApiError> {
    authorize(&state, caller, id, &[Party::Owner]).await?;
    let body = body.0.unwrap_or_default();
    let reason = body
        .reason
        .clone()
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| {
            if caller.is_admin() {
                "cancelled by an administrator"
            } else {
                "cancelled by the buyer"
            }
            .to_owned()
        });
    let command = OrderCommand::Cancel {
        reason,
        cancelled_by: Some(caller.account_id),
    };
    order_command(
        &state,
        order_request(context, caller, id, "cancel", &body),
        id,
        command,
        vec![],
    )
    .await
}

/// Hand the order to a carrier (a seller of its lines, admins).
#[utoipa::path(post, path = "/v1/orders/{id}/shipments", tag = "orders", request_body = ShipmentRequest, security(("bearer" = [])),
    params(("id" = OrderId, Path), ("Idempotency-Key" = Option<String>, Header), ("If-Match" = Option<String>, Header, description = "the ETag of a GET of this resource or of a command on it; a stale version is 412")),
    responses(
        (status = 200, description = "shipped", body = crate::routes::views::OrderChanged),
        (status = 403, description = "neither a seller of its lines nor an admin", body = commerce_http::problem::Problem),
        (status = 404, description = "no such order (or none of your lines)", body = commerce_http::problem::Problem),
        (status = 409, description = "not confirmed yet, or already shipped", body = commerce_http::problem::Problem),
    ))]
pub async fn ship(
    State(state): State<CommandState>,
    caller: Caller,
    context: RequestContext,
    ApiPath(id): ApiPath<OrderId>,
    ApiJson(body): ApiJson<ShipmentRequest>,
) -> Result<Reply, ApiError> {
    authorize(&state, caller, id, &[Party::Seller]).await?;
    let command = OrderCommand::Ship {
        carrier: body.carrier.clone(),
        tracking_number: body.tracking_number.clone(),
    };
    order_command(
        &state,
        order_request(context, caller, id, "shipments", &body),
        id,
        command,
        vec![],
    )
    .await
}

/// Mark the order delivered (a seller of its lines, admins).
#[utoipa::path(post, path = "/v1/orders/{id}/delivery", tag = "orders", security(("bearer" = [])),
    params(("id" = OrderId, Path), ("Idempotency-Key" = Option<String>, Header), ("If-Match" = Option<String>, Header, description = "the ETag of a GET of this resource or of a command on it; a stale version is 412")),
    responses(
        (status = 200, description = "delivered", body = crate::routes::views::OrderChanged),
        (status = 403, description = "neither a seller of its lines nor an admin", body = commerce_http::problem::Problem),
        (status = 404, description = "no such order (or none of your lines)", body = commerce_http::problem::Problem),
        (status = 409, description = "not shipped yet", body = commerce_http::problem::Problem),
    ))]
pub async fn deliver(
    State(state): State<CommandState>,
    caller: Caller,
    context: RequestContext,
    ApiPath(id): ApiPath<OrderId>,
) -> Result<Reply, ApiError> {
    let order = authorize(&state, caller, id, &[Party::Seller]).await?;
    // Recorded with the delivery, so the buyer may review what they received.
    let purchases = match order.buyer_id {
        Some(buyer_id) => order
            .lines
            .iter()
            .map(|line| Claim::DeliveredPurchase {
                buyer_id,
                product_id: line.product_id,
                order_id: id,
            })
            .collect(),
        None => Vec::new(),
    };
    order_command(
        &state,
        order_request(context, caller, id, "delivery", &()),
        id,
        OrderCommand::Deliver,
        purchases,
    )
    .await
}

/// Send a delivered order back (its buyer); the refund follows.
#[utoipa::path(post, path = "/v1/orders/{id}/returns", tag = "orders", request_body(content = ReturnRequest, description = "optional"), security(("bearer" = [])),
    params(("id" = OrderId, Path), ("Idempotency-Key" = Option<String>, Header), ("If-Match" = Option<String>, Header, description = "the ETag of a GET of this resource or of a command on it; a stale version is 412")),
    responses(
        (status = 200, description = "returned", body = crate::routes::views::OrderChanged),
        (status = 403, description = "only the buyer returns an order", body = commerce_http::problem::Problem),
        (status = 404, description = "no such order (or not yours)", body = commerce_http::problem::Problem),
        (status = 409, description = "not delivered", body = commerce_http::problem::Problem),
    ))]
pub async fn return_order(
    State(state): State<CommandState>,
    caller: Caller,
    context: RequestContext,
    ApiPath(id): ApiPath<OrderId>,
    body: OptionalJson<ReturnRequest>,
) -> Result<Reply, ApiError> {
    authorize(&state, caller, id, &[Party::Owner]).await?;
    if caller.is_admin() {
        return Err(ApiError::forbidden(
            "this route is for the order's buyer; you are signed in as an admin",
        ));
    }
    let body = body.0.unwrap_or_default();
    let command = OrderCommand::Return {
        reason: body.reason.clone().unwrap_or_default(),
    };
    order_command(
        &state,
        order_request(context, caller, id, "returns", &body),
        id,
        command,
        vec![],
    )
    .await
}

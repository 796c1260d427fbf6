//! Stock: restock and adjust, by the SKU's seller or an admin.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use commerce_domain::inventory::{Inventory, InventoryCommand, InventoryError, MAX_ON_HAND};
use commerce_domain::values::{Validate, Violations};
use commerce_domain::{Role, Sku};
use commerce_http::{ApiError, ApiPath, Caller, RequestContext, ValidJson};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::pipeline::{run, CommandRequest, Reply};
use crate::CommandState;

/// Goods arrived.
#[derive(Debug, eserde::Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestockRequest {
    /// At least 1.
    pub quantity: i64,
}

/// A correction of the stock on hand.
#[derive(Debug, eserde::Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustRequest {
    /// Units to add (positive) or remove (negative); never below what is reserved.
    pub delta: i64,
    pub reason: String,
}

impl Validate for RestockRequest {
    fn violations(&self) -> Violations {
        let mut violations = Violations::default();
        if !(1..=MAX_ON_HAND).contains(&self.quantity) {
            violations.add(
                &["quantity"],
                format!("quantity must be 1 to {MAX_ON_HAND}, not {}", self.quantity),
            );
        }
        violations
    }
}

impl Validate for AdjustRequest {
    fn violations(&self) -> Violations {
        let mut violations = Violations::default();
        if self.delta == 0 {
            violations.add(&["delta"], InventoryError::ZeroDelta.to_string());
        } else if self.delta > MAX_ON_HAND {
            violations.add(
                &["delta"],
                format!("delta must be at most {MAX_ON_HAND}, not {}", self.delta),
            );
        }
        let reason = self.reason.trim().chars().count();
        if !(1..=MAX_REASON).contains(&reason) {
            violations.add(&["reason"], InventoryError::MissingReason.to_string());
        }
        violations
    }
}

/// The longest reason of an adjustment, in characters (the stock aggregate's rule).
const MAX_REASON: usize = 500;

/// A SKU's stock levels.
#[derive(Debug, Serialize, ToSchema)]
pub struct StockView {
    pub sku: Sku,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
}

fn stock_view(sku: Sku) -> impl Fn(&Inventory) -> commerce_store::StoredResponse + Send + Sync {
    move |inventory: &Inventory| {
        let levels = inventory.levels;
        Reply::stored(
            StatusCode::OK,
            Some(
                json!({ "sku": sku, "on_hand": levels.on_hand, "reserved": levels.reserved, "available": levels.available() }),
            ),
        )
    }
}

/// The SKU's seller or an admin may change its stock.
async fn authorize(state: &CommandState, caller: Caller, sku: &Sku) -> Result<(), ApiError> {
    caller.require(&[Role::Seller, Role::Admin])?;
    let owner = state
        .sku_owners
        .get(sku)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("SKU {sku} does not exist")))?;
    if caller.is_admin() || owner.seller_id == caller.account_id {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "SKU {sku} belongs to another seller"
        )))
    }
}

/// Add units on hand (the SKU's seller, admins).
#[utoipa::path(post, path = "/v1/inventory/{sku}/restock", tag = "inventory", request_body = RestockRequest, security(("bearer" = [])),
    params(("sku" = String, Path), ("Idempotency-Key" = Option<String>, Header), ("If-Match" = Option<String>, Header, description = "the ETag of a GET of this resource or of a command on it; a stale version is 412")),
    responses(
        (status = 200, description = "new levels", body = StockView),
        (status = 403, description = "another seller's SKU", body = commerce_http::problem::Problem),
        (status = 404, description = "unknown SKU", body = commerce_http::problem::Problem),
        (status = 422, description = "quantity below 1, or more than the SKU may hold on hand: `errors[]` points at `/quantity`", body = commerce_http::problem::Problem),
    ))]
pub async fn restock(
    State(state): State<CommandState>,
    caller: Caller,
    context: RequestContext,
    ApiPath(sku): ApiPath<Sku>,
    ValidJson(body): ValidJson<RestockRequest>,
) -> Result<Reply, ApiError> {
    authorize(&state, caller, &sku).await?;
    let request = CommandRequest::new(
        context,
        Some(caller),
        &format!("POST /v1/inventory/{sku}/restock"),
        &body,
    );
    let command = InventoryCommand::Restock {
        quantity: body.quantity,
    };
    run(
        &state,
        &state.inventory,
        sku.as_str(),
        command,
        &request,
        vec![],
        Arc::new(stock_view(sku.clone())),
    )
    .await
    // What the stock refuses against its levels (too much on hand) is about the quantity.
    .map_err(|e| e.at_field("/quantity"))
}

/// Correct the units on hand (the SKU's seller, admins).
#[utoipa::path(post, path = "/v1/inventory/{sku}/adjust", tag = "inventory", request_body = AdjustRequest, security(("bearer" = [])),
    params(("sku" = String, Path), ("Idempotency-Key" = Option<String>, Header), ("If-Match" = Option<String>, Header, description = "the ETag of a GET of this resource or of a command on it; a stale version is 412")),
    responses(
        (status = 200, description = "new levels", body = StockView),
        (status = 403, description = "another seller's SKU", body = commerce_http::problem::Problem),
        (status = 404, description = "unknown SKU", body = commerce_http::problem::Problem),
        (status = 409, description = "would go below reserved", body = commerce_http::problem::Problem),
        (status = 422, description = "zero delta, no reason, or more than the SKU may hold on hand: every one in `errors[]` (`/delta`, `/reason`)", body = commerce_http::problem::Problem),
    ))]
pub async fn adjust(
    State(state): State<CommandState>,
    caller: Caller,
    context: RequestContext,
    ApiPath(sku): ApiPath<Sku>,
    ValidJson(body): ValidJson<AdjustRequest>,
) -> Result<Reply, ApiError> {
    authorize(&state, caller, &sku).await?;
    let request = CommandRequest::new(
        context,
        Some(caller),
        &format!("POST /v1/inventory/{sku}/adjust"),
        &body,
    );
    let command = InventoryCommand::Adjust {
        delta: body.delta,
        reason: body.reason,
    };
    run(
        &state,
        &state.inventory,
        sku.as_str(),
        command,
        &request,
        vec![],
        Arc::new(stock_view(sku.clone())),
    )
    .await
    // What the stock refuses against its levels (too much on hand) is about the delta.
    .map_err(|e| e.at_field("/delta"))
}

//! The buyer's cart and wishlist, and checkout.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use commerce_domain::cart::{Cart, CartCommand, CartEvent, MAX_LINE_QUANTITY};
use commerce_domain::order::{OrderCommand, ShippingAddress};
use commerce_domain::values::{Validate, Violations};
use commerce_domain::{OrderId, PaymentId, PaymentToken, Role, Sku};
use commerce_http::problem::FieldError;
use commerce_http::{ApiError, ApiPath, Caller, RequestContext, ValidJson};
use commerce_store::{keys, Claim, Companion};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::catalog::catalog_item;
use crate::errors::seal_error;
use crate::pipeline::{run, run_with, CommandRequest, Reply};
use crate::CommandState;

/// A cart line's new quantity.
#[derive(Debug, eserde::Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetQuantityRequest {
    /// 0 removes the line; at most 1000.
    pub quantity: u32,
}

/// What checkout needs besides the cart.
#[derive(Debug, eserde::Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    /// The payment provider's token for the buyer's card (sandbox: `tok_ok`, `tok_decline`, …);
    /// 1 to 200 printable characters. It goes to the provider only: no event, read or log holds
    /// it, and the engine deletes it once the payment is final.
    pub payment_token: String,
    pub shipping_address: ShippingAddress,
}

impl Validate for SetQuantityRequest {
    fn violations(&self) -> Violations {
        let mut violations = Violations::default();
        if self.quantity > MAX_LINE_QUANTITY {
            violations.add(
                &["quantity"],
                format!(
                    "quantity must be at most {MAX_LINE_QUANTITY} (0 removes the line), not {}",
                    self.quantity
                ),
            );
        }
        violations
    }
}

impl Validate for CheckoutRequest {
    fn violations(&self) -> Violations {
        let mut violations = Violations::default();
        violations.check(&["payment_token"], PaymentToken::parse(&self.payment_token));
        violations.nest(
            &["shipping_address"],
            address_violations(&self.shipping_address),
        );
        violations
    }
}

/// Every field of `address` that breaks the order's rules. `ShippingAddress::validated` (the
/// truth, which the checkout applies again) stops at the first bad field, so each field is
/// checked on its own here, inside an address whose other fields keep the rules.
fn address_violations(address: &ShippingAddress) -> Violations {
    let valid = ShippingAddress {
        name: "A".into(),
        line1: "A".into(),
        line2: None,
        city: "A".into(),
        postal_code: "A".into(),
        country: "DE".into(),
    };
    let probes = [
        (
            "name",
            ShippingAddress {
                name: address.name.clone(),
                ..valid.clone()
            },
        ),
        (
            "line1",
            ShippingAddress {
                line1: address.line1.clone(),
                ..valid.clone()
            },
        ),
        (
            "line2",
            ShippingAddress {
                line2: address.line2.clone(),
                ..valid.clone()
            },
        ),
        (
            "city",
            ShippingAddress {
                city: address.city.clone(),
                ..valid.clone()
            },
        ),
        (
            "postal_code",
            ShippingAddress {
                postal_code: address.postal_code.clone(),
                ..valid.clone()
            },
        ),
        (
            "country",
            ShippingAddress {
                country: address.country.clone(),
                ..valid.clone()
            },
        ),
    ];
    let mut violations = Violations::default();
    for (field, probe) in probes {
        violations.check(&[field], probe.validated());
    }
    // A rule about fields together would show only here.
    if violations.is_empty() {
        violations.check::<_, _, &str>(&[], address.clone().validated());
    }
    violations
}

/// The placed order.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckoutAccepted {
    pub order_id: OrderId,
}

/// The cart as the write side knows it: `items[]` (`sku`, `quantity`, `unit_price`), `total`, `wishlist`.
pub(crate) fn cart_view(cart: &Cart) -> Value {
    let items: Vec<Value> = cart
        .lines
        .iter()
        .map(|(sku, line)| {
            json!({
                "sku": sku,
                "product_id": line.product_id,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "line_total": line.unit_price.times(line.quantity),
            })
        })
        .collect();
    json!({ "items": items, "total": cart.total(), "wishlist": cart.wishlist })
}

fn cart_reply() -> commerce_store::Respond<Cart> {
    Arc::new(|cart: &Cart| Reply::stored(StatusCode::OK, Some(cart_view(cart))))
}

async fn cart_command(
    state: &CommandState,
    caller: Caller,
    context: RequestContext,
    route: String,
    body: &impl Serialize,
    command: CartCommand,
) -> Result<Reply, ApiError> {
    let request = CommandRequest::new(context, Some(caller), &route, body);
    run(
        state,
        &state.carts,
        &caller.account_id.to_string(),
        command,
        &request,
        vec![],
        cart_reply(),
    )
    .await
}

/// Set a cart line's quantity; 0 removes it (buyers).
#[utoipa::path(put, path = "/v1/me/cart/items/{sku}", tag = "cart", request_body = SetQuantityRequest, security(("bearer" = [])),
    params(("sku" = String, Path), ("If-Match" = Option<String>, Header, description = "the ETag of a GET of this resource or of a command on it; a stale version is 412")),
    responses(
        (status = 200, description = "the cart", body = crate::routes::views::CartView),
        (status = 403, description = "not a buyer", body = commerce_http::problem::Problem),
        (status = 404, description = "unknown SKU", body = commerce_http::problem::Problem),
        (status = 412, description = "stale If-Match", body = commerce_http::problem::Problem),
        (status = 422, description = "invalid quantity, or SKU not for sale: delisted, or a product's own SKU that has variants and no stock of its own (add a variant); a quantity above what is available is accepted, and flagged by `GET /v1/me/cart`", body = commerce_http::problem::Problem),
    ))]
pub async fn set_quantity(
    State(state): State<CommandState>,
    caller: Caller,
    context: RequestContext,
    ApiPath(sku): ApiPath<Sku>,
    ValidJson(body): ValidJson<SetQuantityRequest>,
) -> Result<Reply, ApiError> {
    caller.require(&[Role::Buyer])?;
    let item = if body.quantity == 0 {
        None
    } else {
        catalog_item(&state, &sku).await?
    };
    let route = format!("PUT /v1/me/cart/items/{sku}");
    cart_command(
        &state,
        caller,
        context,
        route,
        &body,
        CartCommand::SetQuantity {
            sku,
            quantity: body.quantity,
            item,
        },
    )
    .await
}

/// Remove a cart line (buyers).
#[utoipa::path(delete, path = "/v1/me/cart/items/{sku}", tag = "cart", security(("bearer" = [])),
    params(("sku" = String, Path)),
    responses((status = 200, description = "the cart", body = crate::routes::views::CartView), (status = 403, description = "not a buyer", body = commerce_http::problem::Problem), (status = 404, description = "not in the cart", body = commerce_http::problem::Problem)))]
pub async fn remove_item(
    State(state): State<CommandState>,
    caller: Caller,
    context: RequestContext,
    ApiPath(sku): ApiPath<Sku>,
) -> Result<Reply, ApiError> {
    caller.require(&[Role::Buyer])?;
    let route = format!("DELETE /v1/me/cart/items/{sku}");
    cart_command(
        &state,
        caller,
        context,
        route,
        &(),
        CartCommand::RemoveItem { sku },
    )
    .await
}

/// Move a cart line to the wishlist (buyers).
#[utoipa::path(post, path = "/v1/me/cart/items/{sku}/move-to-wishlist", tag = "cart", security(("bearer" = [])),
    params(("sku" = String, Path)),
    responses((status = 200, description = "the cart and wishlist", body = crate::routes::views::CartView), (status = 403, description = "not a buyer", body = commerce_http::problem::Problem), (status = 404, description = "not in the cart", body = commerce_http::problem::Problem)))]
pub async fn move_to_wishlist(
    State(state): State<CommandState>,
    caller: Caller,
    context: RequestContext,
    ApiPath(sku): ApiPath<Sku>,
) -> Result<Reply, ApiError> {
    caller.require(&[Role::Buyer])?;
    let route = format!("POST /v1/me/cart/items/{sku}/move-to-wishlist");
    cart_command(
        &state,
        caller,
        context,
        route,
        &(),
        CartCommand::MoveToWishlist { sku },
    )
    .await
}

/// Add a SKU to the wishlist (buyers).
#[utoipa::path(put, path = "/v1/me/wishlist/items/{sku}", tag = "cart", security(("bearer" = [])),
    params(("sku" = String, Path)),
    responses((status = 200, description = "the cart and wishlist", body = crate::routes::views::CartView), (status = 403, description = "not a buyer", body = commerce_http::problem::Problem), (status = 404, description = "unknown SKU", body = commerce_http::problem::Problem)))]
pub async fn add_to_wishlist(
    State(state): State<CommandState>,
    caller: Caller,
    context: RequestContext,
    ApiPath(sku): ApiPath<Sku>,
) -> Result<Reply, ApiError> {
    caller.require(&[Role::Buyer])?;
    let item = catalog_item(&state, &sku).await?;
    let route = format!("PUT /v1/me/wishlist/items/{sku}");
    cart_command(
        &state,
        caller,
        context,
        route,
        &(),
        CartCommand::AddToWishlist { sku, item },
    )
    .await
}

/// Remove a SKU from the wishlist (buyers).
#[utoipa::path(delete, path = "/v1/me/wishlist/items/{sku}", tag = "cart", security(("bearer" = [])),
    params(("sku" = String, Path)),
    responses((status = 200, description = "the cart and wishlist", body = crate::routes::views::CartView), (status = 403, description = "not a buyer", body = commerce_http::problem::Problem), (status = 404, description = "not in the wishlist", body = commerce_http::problem::Problem)))]
pub async fn remove_from_wishlist(
    State(state): State<CommandState>,
    caller: Caller,
    context: RequestContext,
    ApiPath(sku): ApiPath<Sku>,
) -> Result<Reply, ApiError> {
    caller.require(&[Role::Buyer])?;
    let route = format!("DELETE /v1/me/wishlist/items/{sku}");
    cart_command(
        &state,
        caller,
        context,
        route,
        &(),
        CartCommand::RemoveFromWishlist { sku },
    )
    .await
}

/// Close the cart into an order (buyers). The order is `pending` until the checkout saga moves it on.
#[utoipa::path(post, path = "/v1/me/cart/checkout", tag = "cart", request_body = CheckoutRequest, security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "retries with the same key and body return the first response")),
    responses(
        (status = 202, description = "order placed; `Location` names it", body = CheckoutAccepted),
        (status = 403, description = "not a buyer", body = commerce_http::problem::Problem),
        (status = 409, description = "a line is no longer for sale", body = commerce_http::problem::Problem),
        (status = 422, description = "empty cart, invalid address or payment token", body = commerce_http::problem::Problem),
    ))]
pub async fn checkout(
    State(state): State<CommandState>,
    caller: Caller,
    context: RequestContext,
    ValidJson(body): ValidJson<CheckoutRequest>,
) -> Result<Reply, ApiError> {
    caller.require(&[Role::Buyer])?;
    let request = CommandRequest::new(context, Some(caller), "POST /v1/me/cart/checkout", &body);
    if let Some(reply) = request.previous_reply(&state).await? {
        return Ok(reply);
    }
    let (shipping_address, token) = match (
        body.shipping_address.validated(),
        PaymentToken::parse(&body.payment_token),
    ) {
        (Ok(address), Ok(token)) => (address, token),
        (address, token) => {
            let address = address.err().map(|e| ("/shipping_address", e.0));
            let token = token.err().map(|e| ("/payment_token", e.0));
            let errors = address.into_iter().chain(token);
            return Err(ApiError::invalid_fields(
                errors.map(|(at, e)| FieldError::body(at, e)).collect(),
            ));
        }
    };
    // Personal data enters the order's events sealed for the buyer.
    let shipping_address = keys::seal(state.pool(), caller.account_id.0, &shipping_address)
        .await
        .map_err(seal_error)?;
    let buyer = caller.account_id.to_string();
    // Priced on the latest cart: another process may have changed it since this one cached it.
    let cart = state.carts.load_latest(&buyer).await?;
    let mut catalog = Vec::with_capacity(cart.state.lines.len());
    for sku in cart.state.lines.keys() {
        catalog.push((sku.clone(), catalog_item(&state, sku).await?));
    }
    let order_id = OrderId::new();
    let checkout = CartCommand::Checkout { order_id, catalog };
    // The order opens in the same transaction as the cart closes.
    let place = move |_: &Cart, events: &[CartEvent]| match events.first() {
        Some(CartEvent::CheckedOut { lines, total, .. }) => Some(OrderCommand::Place {
            order_id,
            buyer_id: caller.account_id,
            lines: lines.clone(),
            total: *total,
            shipping_address: shipping_address.clone(),
        }),
        _ => None,
    };
    let companion = Companion::new(
        &state.orders,
        order_id.to_string(),
        request.metadata(),
        place,
    )
    .new_aggregate();
    let respond: commerce_store::Respond<Cart> = Arc::new(move |_: &Cart| {
        let mut response =
            Reply::stored(StatusCode::ACCEPTED, Some(json!({ "order_id": order_id })));
        response.location = Some(format!("/v1/orders/{order_id}"));
        // The order's version: it was just placed.
        response.etag = Some(1);
        response
    });
    run_with(
        &state,
        &state.carts,
        &buyer,
        checkout,
        &request,
        // The card token is kept beside the events that place the order, never in them; the
        // order's saga is due as soon as they commit.
        vec![
            Claim::PaymentToken {
                payment_id: PaymentId::for_order(order_id),
                token,
            },
            Claim::SagaDue { order_id },
        ],
        respond,
        Some(companion),
    )
    .await
}

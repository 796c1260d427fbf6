//! Reviews: a buyer with a delivered order of a product reviews it, once.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use commerce_domain::privacy::{Personal, Sealed};
use commerce_domain::review::{review_id, Review, ReviewCommand};
use commerce_domain::{AccountId, ProductId, Role};
use commerce_http::{ApiError, ApiJson, ApiPath, Caller, RequestContext};
use commerce_store::{claims, keys};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::errors::seal_error;
use crate::pipeline::{run, CommandRequest, Reply};
use crate::CommandState;

/// A review.
#[derive(Debug, eserde::Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewRequest {
    /// 1 to 5.
    pub rating: u8,
    pub title: String,
    #[serde(default)]
    pub body: String,
}

/// Review a product (a buyer whose order of it was delivered; once).
#[utoipa::path(post, path = "/v1/products/{id}/reviews", tag = "products", request_body = ReviewRequest, security(("bearer" = [])),
    params(("id" = ProductId, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses(
        (status = 201, description = "reviewed", body = crate::routes::views::ReviewWritten),
        (status = 403, description = "no delivered order of this product", body = commerce_http::problem::Problem),
        (status = 404, description = "no such product", body = commerce_http::problem::Problem),
        (status = 409, description = "already reviewed", body = commerce_http::problem::Problem),
        (status = 422, description = "rating not 1 to 5, empty or overlong title, overlong body: every one in `errors[]` (`/rating`, `/title`, `/body`)", body = commerce_http::problem::Problem),
    ))]
///
/// Whether the caller may review the product is decided first (404, 403, 409); then the review
/// aggregate checks the rating, title and body together and names every bad one in `errors[]`.
pub async fn write(
    State(state): State<CommandState>,
    caller: Caller,
    context: RequestContext,
    ApiPath(product_id): ApiPath<ProductId>,
    ApiJson(body): ApiJson<ReviewRequest>,
) -> Result<Reply, ApiError> {
    caller.require(&[Role::Buyer])?;
    let product = state.products.load(&product_id.to_string()).await?;
    if product.state.seller_id.is_none() {
        return Err(ApiError::not_found(format!(
            "product {product_id} does not exist"
        )));
    }
    let delivered =
        claims::has_delivered_purchase(state.pool(), caller.account_id, product_id).await?;
    let request = CommandRequest::new(
        context,
        Some(caller),
        &format!("POST /v1/products/{product_id}/reviews"),
        &body,
    );
    let buyer_id = caller.account_id;
    let author_name = author_name(&state, buyer_id).await?;
    let id = review_id(product_id, buyer_id);
    let respond = Arc::new(move |review: &Review| {
        Reply::stored(
            StatusCode::CREATED,
            Some(json!({ "product_id": product_id, "rating": review.rating })),
        )
    });
    let command = ReviewCommand::Write {
        product_id,
        buyer_id,
        delivered,
        author_name,
        rating: body.rating,
        title: body.title,
        body: body.body,
    };
    run(
        &state,
        &state.reviews,
        &id,
        command,
        &request,
        vec![],
        respond,
    )
    .await
}

/// The buyer's display name as their account holds it, sealed for them: a review shows it, never
/// the buyer's id. An account registered before names were sealed gets it sealed now.
async fn author_name(state: &CommandState, buyer: AccountId) -> Result<Sealed, ApiError> {
    let account = state.accounts.load(&buyer.to_string()).await?.state;
    match account.name {
        Some(Personal::Sealed(name)) => Ok(name),
        Some(Personal::Clear(name)) => keys::seal(state.pool(), buyer.0, &name)
            .await
            .map_err(seal_error),
        None => Err(ApiError::unauthorized("the account does not exist")),
    }
}

//! Products: create, change, delist, and bulk import.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use commerce_domain::product::{Product, ProductChanges, ProductCommand, ProductDraft};
use commerce_domain::values::{Validate, Violations};
use commerce_domain::{ProductId, Role};
use commerce_http::problem::FieldError;
use commerce_http::{ApiError, ApiPath, Caller, RequestContext, ValidJson};
use commerce_store::Claim;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::pipeline::{run, CommandRequest, Reply, EVENT_POSITION};
use crate::CommandState;

/// Most lines one import may hold.
const MAX_IMPORT_LINES: usize = 1_000;

/// The product as the write side knows it.
pub(crate) fn product_view(id: ProductId, product: &Product) -> Value {
    let Some(details) = &product.details else {
        return json!({ "product_id": id });
    };
    json!({
        "product_id": id,
        "seller_id": product.seller_id,
        "sku": details.sku,
        "name": details.name,
        "description": details.description,
        "price": details.price,
        "category": details.category,
        "attributes": details.attributes,
        "variants": details.variants,
        "listed": product.listed,
    })
}

async fn create_product(
    state: &CommandState,
    caller: Caller,
    request: &CommandRequest,
    draft: ProductDraft,
) -> Result<Reply, ApiError> {
    let product_id = ProductId::new();
    let claims = draft
        .skus()
        .map(|sku| Claim::Sku {
            sku: sku.clone(),
            product_id,
            seller_id: caller.account_id,
        })
        .collect();
    let respond = Arc::new(move |product: &Product| {
        let mut response =
            Reply::stored(StatusCode::CREATED, Some(product_view(product_id, product)));
        response.location = Some(format!("/v1/products/{product_id}"));
        response
    });
    let command = ProductCommand::Create {
        seller_id: caller.account_id,
        draft,
    };
    run(
        state,
        &state.products,
        &product_id.to_string(),
        command,
        request,
        claims,
        respond,
    )
    .await
}

/// Put a product on sale (sellers).
#[utoipa::path(post, path = "/v1/products", tag = "products", request_body = ProductDraft, security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "retries with the same key and body return the first response")),
    responses(
        (status = 201, description = "created", body = crate::routes::views::ProductView, headers(("Location" = String, description = "`/v1/products/{id}`"))),
        (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
        (status = 403, description = "not a seller", body = commerce_http::problem::Problem),
        (status = 409, description = "a SKU is taken", body = commerce_http::problem::Problem),
        (status = 422, description = "invalid fields: every one in `errors[]`, each with its JSON pointer (`/name`, `/attributes/colour`, `/variants/0/price/amount`)", body = commerce_http::problem::Problem),
    ))]
pub async fn create(
    State(state): State<CommandState>,
    caller: Caller,
    context: RequestContext,
    ValidJson(draft): ValidJson<ProductDraft>,
) -> Result<Reply, ApiError> {
    caller.require(&[Role::Seller])?;
    let request = CommandRequest::new(context, Some(caller), "POST /v1/products", &draft);
    create_product(&state, caller, &request, draft).await
}

/// What `PATCH /v1/products/{id}` takes: fields to change, and whether the product is on sale.
#[derive(Debug, Clone, Default, Serialize, eserde::Deserialize, ToSchema)]
pub struct ProductPatch {
    #[serde(flatten)]
    pub changes: ProductChanges,
    /// `true` puts a delisted product back on sale (its fields may change in the same request);
    /// `false` takes it off, as `DELETE` does. The listing it has already changes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed: Option<bool>,
}

impl Validate for ProductPatch {
    fn violations(&self) -> Violations {
        self.changes.violations()
    }
}

/// Change a product's fields, or relist it with `{"listed": true}` (its seller).
#[utoipa::path(patch, path = "/v1/products/{id}", tag = "products", request_body = ProductPatch, security(("bearer" = [])),
    params(("id" = ProductId, Path), ("If-Match" = Option<String>, Header, description = "the ETag of a GET of this resource or of a command on it; a stale version is 412")),
    responses(
        (status = 200, description = "changed", body = crate::routes::views::ProductView),
        (status = 403, description = "another seller's product", body = commerce_http::problem::Problem),
        (status = 404, description = "no such product", body = commerce_http::problem::Problem),
        (status = 409, description = "the product is delisted: relist it with `listed: true` to change it", body = commerce_http::problem::Problem),
        (status = 412, description = "stale If-Match", body = commerce_http::problem::Problem),
        (status = 422, description = "invalid fields, or nothing to change: every one in `errors[]`, each with its JSON pointer", body = commerce_http::problem::Problem),
    ))]
pub async fn update(
    State(state): State<CommandState>,
    caller: Caller,
    context: RequestContext,
    ApiPath(id): ApiPath<ProductId>,
    ValidJson(patch): ValidJson<ProductPatch>,
) -> Result<Reply, ApiError> {
    caller.require(&[Role::Seller])?;
    let request = CommandRequest::new(
        context,
        Some(caller),
        &format!("PATCH /v1/products/{id}"),
        &patch,
    );
    let respond = Arc::new(move |product: &Product| {
        Reply::stored(StatusCode::OK, Some(product_view(id, product)))
    });
    let command = ProductCommand::Update {
        by: caller.account_id,
        changes: patch.changes,
        listed: patch.listed,
    };
    run(
        &state,
        &state.products,
        &id.to_string(),
        command,
        &request,
        vec![],
        respond,
    )
    .await
}

/// Take a product off sale (its seller); its history stays.
#[utoipa::path(delete, path = "/v1/products/{id}", tag = "products", security(("bearer" = [])),
    params(("id" = ProductId, Path)),
    responses(
        (status = 204, description = "delisted"),
        (status = 403, description = "another seller's product", body = commerce_http::problem::Problem),
        (status = 404, description = "no such product", body = commerce_http::problem::Problem),
        (status = 409, description = "already delisted", body = commerce_http::problem::Problem),
    ))]
pub async fn delist(
    State(state): State<CommandState>,
    caller: Caller,
    context: RequestContext,
    ApiPath(id): ApiPath<ProductId>,
) -> Result<Reply, ApiError> {
    caller.require(&[Role::Seller])?;
    let request = CommandRequest::new(
        context,
        Some(caller),
        &format!("DELETE /v1/products/{id}"),
        &(),
    );
    let respond = Arc::new(|_: &Product| Reply::stored(StatusCode::NO_CONTENT, None));
    run(
        &state,
        &state.products,
        &id.to_string(),
        ProductCommand::Delist {
            by: caller.account_id,
        },
        &request,
        vec![],
        respond,
    )
    .await
}

/// The outcome of one import line.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportLine {
    /// 1-based line number.
    pub line: usize,
    /// The status the line would have had as its own `POST /v1/products`.
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_id: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the line is invalid: each field that does not fit or breaks a rule, with its JSON
    /// pointer into the line, as `errors[]` of the problem `POST /v1/products` would answer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// The outcome of an import.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportReport {
    pub created: usize,
    pub failed: usize,
    pub results: Vec<ImportLine>,
}

/// Create many products from NDJSON, one product a line (sellers). One bad line does not sink the others.
#[utoipa::path(post, path = "/v1/products/import", tag = "products", security(("bearer" = [])),
    request_body(content = Vec<ProductDraft>, content_type = "application/x-ndjson", description = "NDJSON: one product (the body of `POST /v1/products`) per line, at most 1,000 lines. The schema lists the lines as an array: OpenAPI 3.1 has no schema for the items of a stream."),
    responses(
        (status = 200, description = "per-line results", body = ImportReport),
        (status = 403, description = "not a seller", body = commerce_http::problem::Problem),
        (status = 413, description = "body over 1 MiB", body = commerce_http::problem::Problem),
        (status = 422, description = "too many lines", body = commerce_http::problem::Problem),
    ))]
pub async fn import(
    State(state): State<CommandState>,
    caller: Caller,
    context: RequestContext,
    body: Result<String, axum::extract::rejection::StringRejection>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Seller])?;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            commerce_http::extract::too_large()
        } else {
            ApiError::bad_request(rejection.body_text())
        }
    })?;
    let lines: Vec<(usize, &str)> = body
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
        .collect();
    if lines.len() > MAX_IMPORT_LINES {
        return Err(ApiError::unprocessable(format!(
            "an import holds at most {MAX_IMPORT_LINES} lines"
        )));
    }
    let mut results = Vec::with_capacity(lines.len());
    // The position of the last event any line appended: what a reader waits for to see them all.
    let mut last_position = None;
    for (line, text) in lines {
        // Parsed as every body is, so a NUL in a line is refused before it can reach Postgres.
        let outcome = match commerce_http::extract::from_valid_json::<ProductDraft>(text.as_bytes())
        {
            // A line that does not parse or breaks a rule is 422 whatever the cause: the import
            // itself was well-formed.
            Err(e) => Err((
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("line {line}: {}", e.detail()),
                e,
            )),
            Ok(draft) => {
                // Each line is its own command; a key, when sent, is made per line.
                let mut line_context = context.clone();
                line_context.idempotency_key = context
                    .idempotency_key
                    .as_ref()
                    .map(|k| format!("{k}#{line}"));
                let request =
                    CommandRequest::new(line_context, Some(caller), "POST /v1/products", &draft);
                match request.previous_reply(&state).await {
                    Ok(Some(reply)) => Ok(reply),
                    Ok(None) => create_product(&state, caller, &request, draft).await,
                    Err(e) => Err(e),
                }
                .map_err(|e| (e.status(), e.detail().to_owned(), e))
            }
        };
        results.push(match outcome {
            Ok(reply) => {
                last_position = last_position.max(reply.0.position);
                ImportLine {
                    line,
                    status: reply.0.status,
                    product_id: reply.0.body.and_then(|b| b.get("product_id").cloned()),
                    error: None,
                    errors: Vec::new(),
                }
            }
            Err((status, detail, error)) => ImportLine {
                line,
                status: status.as_u16(),
                product_id: None,
                error: Some(detail),
                errors: error.errors().to_vec(),
            },
        });
    }
    let created = results.iter().filter(|r| r.status == 201).count();
    let report = axum::Json(ImportReport {
        created,
        failed: results.len() - created,
        results,
    });
    let position = last_position.map(|p| [(EVENT_POSITION, p.to_string())]);
    Ok((position, report).into_response())
}

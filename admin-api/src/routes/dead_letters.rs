//! Parked events: listing them, one with its event, and retrying one or all.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use commerce_http::extract::OptionalJson;
use commerce_http::page::{Page, PageParams};
use commerce_http::{ApiError, ApiPath, ApiQuery};
use commerce_projections::dead_letters::{self, DeadLetter, RetryOutcome};
use commerce_projections::SharedProjection;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::{redact, Admin, AdminState};

/// A parked event.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterItem {
    pub dead_letter_id: i64,
    pub projection: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub position: i64,
    pub event_type: String,
    /// The last failure, with its causes.
    pub error: String,
    pub attempts: i32,
    pub parked_at: DateTime<Utc>,
    /// When a retry applied it; absent while it is still parked.
    pub retried_at: Option<DateTime<Utc>>,
}

impl From<&DeadLetter> for DeadLetterItem {
    fn from(letter: &DeadLetter) -> Self {
        Self {
            dead_letter_id: letter.id,
            projection: letter.projection.clone(),
            aggregate_type: letter.aggregate_type.clone(),
            aggregate_id: letter.aggregate_id.clone(),
            sequence: letter.sequence,
            position: letter.position,
            event_type: letter.event_type.clone(),
            error: letter.error.clone(),
            attempts: letter.attempts,
            parked_at: letter.parked_at,
            retried_at: letter.retried_at,
        }
    }
}

/// A parked event with the event itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterDetail {
    #[serde(flatten)]
    pub item: DeadLetterItem,
    pub event_version: String,
    pub recorded_at: DateTime<Utc>,
    /// The event as the domain wrote it (credentials redacted).
    #[schema(value_type = Object)]
    pub payload: Value,
    #[schema(value_type = Object)]
    pub metadata: Value,
}

/// Which dead letters to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterParams {
    /// Only this projection's.
    pub projection: Option<String>,
    /// Also those a retry applied (default false: only the ones still parked).
    pub include_retried: Option<bool>,
    /// Items per page: default 20, at most 100.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The projection named `name`, or 422.
fn projection<'s>(state: &'s AdminState, name: &str) -> Result<&'s SharedProjection, ApiError> {
    state.projection(name).ok_or_else(|| {
        ApiError::unprocessable(format!("this engine runs no projection named `{name}`"))
    })
}

/// Parked events, oldest first.
#[utoipa::path(get, path = "/v1/admin/dead-letters", tag = "admin", security(("bearer" = [])),
    params(DeadLetterParams),
    responses((status = 200, description = "dead letters", body = Page<DeadLetterItem>),
              (status = 400, description = "bad cursor or limit", body = commerce_http::problem::Problem),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "not an admin", body = commerce_http::problem::Problem),
              (status = 422, description = "unknown projection", body = commerce_http::problem::Problem)))]
pub async fn list(
    _: Admin,
    State(state): State<AdminState>,
    ApiQuery(params): ApiQuery<DeadLetterParams>,
) -> Result<Json<Page<DeadLetterItem>>, ApiError> {
    if let Some(name) = &params.projection {
        projection(&state, name)?;
    }
    let page = PageParams {
        limit: params.limit,
        cursor: params.cursor,
    };
    let limit = page.strict_limit()?;
    let after: i64 = page.cursor()?.unwrap_or(0);
    let rows = dead_letters::list_page(
        &state.pool,
        params.projection.as_deref(),
        params.include_retried.unwrap_or(false),
        after,
        limit + 1,
    )
    .await?;
    let page = Page::from_rows(rows, limit, |l| l.id);
    Ok(Json(Page {
        items: page.items.iter().map(DeadLetterItem::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One dead letter with its event.
#[utoipa::path(get, path = "/v1/admin/dead-letters/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, description = "the dead letter", body = DeadLetterDetail),
              (status = 400, description = "the id is not a number", body = commerce_http::problem::Problem),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "not an admin", body = commerce_http::problem::Problem),
              (status = 404, description = "no such dead letter", body = commerce_http::problem::Problem)))]
pub async fn show(
    _: Admin,
    State(state): State<AdminState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<DeadLetterDetail>, ApiError> {
    let letter = dead_letters::get(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no dead letter {id}")))?;
    Ok(Json(DeadLetterDetail {
        item: DeadLetterItem::from(&letter),
        event_version: letter.event_version,
        recorded_at: letter.recorded_at,
        payload: redact::credentials(letter.payload),
        metadata: letter.metadata,
    }))
}

/// A retry that applied.
#[derive(Debug, Serialize, ToSchema)]
pub struct Retried {
    pub dead_letter_id: i64,
    /// `applied`.
    pub outcome: String,
}

/// Applies a parked event again, through its projection.
#[utoipa::path(post, path = "/v1/admin/dead-letters/{id}/retry", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, description = "it applied", body = Retried),
              (status = 400, description = "the id is not a number", body = commerce_http::problem::Problem),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "not an admin", body = commerce_http::problem::Problem),
              (status = 404, description = "no such dead letter, or already retried", body = commerce_http::problem::Problem),
              (status = 409, description = "it failed again; `detail` carries the error", body = commerce_http::problem::Problem),
              (status = 422, description = "its projection is not run by this engine", body = commerce_http::problem::Problem)))]
pub async fn retry(
    _: Admin,
    State(state): State<AdminState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Retried>, ApiError> {
    let not_found = || ApiError::not_found(format!("no dead letter {id} is still parked"));
    let letter = dead_letters::get(&state.pool, id)
        .await?
        .filter(|l| l.retried_at.is_none())
        .ok_or_else(not_found)?;
    let projection = projection(&state, &letter.projection)?;
    match dead_letters::retry(&state.pool, projection, id).await? {
        RetryOutcome::Applied => Ok(Json(Retried {
            dead_letter_id: id,
            outcome: "applied".to_owned(),
        })),
        RetryOutcome::Failed(error) => Err(ApiError::conflict(format!(
            "dead letter {id} failed again: {error}"
        ))),
        RetryOutcome::NotFound => Err(not_found()),
    }
}

/// Which dead letters to retry.
#[derive(Debug, Default, eserde::Deserialize, ToSchema)]
pub struct RetryAllRequest {
    /// Only this projection's; absent, every projection's.
    pub projection: Option<String>,
}

/// What a retry of every parked event came to.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetryAllOutcome {
    pub applied: u64,
    pub failed: u64,
    pub failed_ids: Vec<i64>,
}

/// Retries every parked event (of one projection, or of all), oldest first.
#[utoipa::path(post, path = "/v1/admin/dead-letters/retry", tag = "admin", security(("bearer" = [])),
    request_body(content = Option<RetryAllRequest>, description = "optional"),
    responses((status = 200, description = "how many applied and which failed again", body = RetryAllOutcome),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "not an admin", body = commerce_http::problem::Problem),
              (status = 422, description = "unknown projection", body = commerce_http::problem::Problem)))]
pub async fn retry_all(
    _: Admin,
    State(state): State<AdminState>,
    OptionalJson(request): OptionalJson<RetryAllRequest>,
) -> Result<Json<RetryAllOutcome>, ApiError> {
    let request = request.unwrap_or_default();
    if let Some(name) = &request.projection {
        projection(&state, name)?;
    }
    let parked = dead_letters::list_parked(&state.pool, request.projection.as_deref()).await?;
    let mut outcome = RetryAllOutcome {
        applied: 0,
        failed: 0,
        failed_ids: Vec::new(),
    };
    for letter in parked {
        // A projection this engine does not run cannot apply its letters: they fail.
        let retried = match state.projection(&letter.projection) {
            Some(projection) => dead_letters::retry(&state.pool, projection, letter.id).await?,
            None => RetryOutcome::Failed("not run by this engine".to_owned()),
        };
        match retried {
            RetryOutcome::Applied => outcome.applied += 1,
            RetryOutcome::Failed(_) => {
                outcome.failed += 1;
                outcome.failed_ids.push(letter.id);
            }
            // Retried by someone else meanwhile.
            RetryOutcome::NotFound => {}
        }
    }
    Ok(Json(outcome))
}

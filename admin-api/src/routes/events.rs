//! The whole store in position order (`events tail`), and republishing it to JetStream.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use commerce_http::page::{Page, PageParams};
use commerce_http::{ApiError, ApiJson, ApiPath, ApiQuery};
use commerce_projections::republish::{self, RepublishProgress};
use commerce_store::history::{self, RecordedEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::streams::known_type;
use crate::{redact, Admin, AdminState};

/// An event of the store.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventItem {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub position: i64,
    pub event_type: String,
    pub event_version: String,
    pub recorded_at: DateTime<Utc>,
    /// The event at its type's current version, as every reader sees it (credentials redacted).
    #[schema(value_type = Object)]
    pub payload: Value,
    #[schema(value_type = Object)]
    pub metadata: Value,
}

impl From<RecordedEvent> for EventItem {
    fn from(event: RecordedEvent) -> Self {
        Self {
            aggregate_type: event.aggregate_type,
            aggregate_id: event.aggregate_id,
            sequence: event.sequence,
            position: event.position,
            event_type: event.event_type,
            event_version: event.event_version,
            recorded_at: event.recorded_at,
            payload: redact::credentials(event.payload),
            metadata: event.metadata,
        }
    }
}

/// Which events to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsParams {
    /// Events with a higher position (default 0: from the start). A `cursor` overrides it.
    pub after: Option<i64>,
    /// Only events of this aggregate type.
    pub aggregate_type: Option<String>,
    /// Items per page: default 20, at most 100.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Events after a position, in position order; only those of transactions older than every
/// running one, so that a tail never passes an event still being written.
#[utoipa::path(get, path = "/v1/admin/events", tag = "admin", security(("bearer" = [])),
    params(EventsParams),
    responses((status = 200, description = "events", body = Page<EventItem>),
              (status = 400, description = "bad cursor, limit or position", body = commerce_http::problem::Problem),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "not an admin", body = commerce_http::problem::Problem),
              (status = 422, description = "unknown aggregate type", body = commerce_http::problem::Problem)))]
pub async fn list(
    _: Admin,
    State(state): State<AdminState>,
    ApiQuery(params): ApiQuery<EventsParams>,
) -> Result<Json<Page<EventItem>>, ApiError> {
    if let Some(aggregate_type) = &params.aggregate_type {
        known_type(aggregate_type).map_err(|e| ApiError::unprocessable(e.detail().to_owned()))?;
    }
    let page = PageParams {
        limit: params.limit,
        cursor: params.cursor,
    };
    let limit = page.strict_limit()?;
    let after = match page.cursor::<i64>()? {
        Some(position) => position,
        None => params.after.unwrap_or(0),
    };
    if after < 0 {
        return Err(ApiError::bad_request("after must be a position from 0"));
    }
    let events = history::events_after(
        &state.pool,
        after,
        params.aggregate_type.as_deref(),
        limit + 1,
    )
    .await?;
    let page = Page::from_rows(events, limit, |e| e.position);
    Ok(Json(Page {
        items: page.items.into_iter().map(EventItem::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Where a republish starts.
#[derive(Debug, eserde::Deserialize, ToSchema)]
pub struct RepublishRequest {
    /// The first position to publish again, from 1.
    pub from_position: i64,
}

/// Publishes the store again from a position, as the relay publishes it: JetStream drops
/// what is still in its duplicate window, projections skip what they have applied.
#[utoipa::path(post, path = "/v1/admin/events/republish", tag = "admin", security(("bearer" = [])),
    request_body = RepublishRequest,
    responses((status = 202, description = "started; `Location` names its progress", body = RepublishProgress),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "not an admin", body = commerce_http::problem::Problem),
              (status = 422, description = "from_position below 1", body = commerce_http::problem::Problem)))]
pub async fn start_republish(
    _: Admin,
    State(state): State<AdminState>,
    ApiJson(request): ApiJson<RepublishRequest>,
) -> Result<Response, ApiError> {
    if request.from_position < 1 {
        return Err(ApiError::unprocessable("from_position must be at least 1"));
    }
    let progress = republish::start(
        &state.pool,
        &state.jetstream,
        &state.namespace,
        state.stream_replicas,
        request.from_position,
        state.shutdown.clone(),
    )
    .await?;
    let location = format!("/v1/admin/republishes/{}", progress.republish_id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(progress),
    )
        .into_response())
}

/// A republish's progress.
#[utoipa::path(get, path = "/v1/admin/republishes/{republish_id}", tag = "admin", security(("bearer" = [])),
    params(("republish_id" = Uuid, Path)),
    responses((status = 200, description = "its progress", body = RepublishProgress),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "not an admin", body = commerce_http::problem::Problem),
              (status = 404, description = "no such republish", body = commerce_http::problem::Problem)))]
pub async fn republish_progress(
    _: Admin,
    State(state): State<AdminState>,
    ApiPath(republish_id): ApiPath<Uuid>,
) -> Result<Json<RepublishProgress>, ApiError> {
    republish::progress(&state.pool, &state.namespace, republish_id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no republish {republish_id}")))
}

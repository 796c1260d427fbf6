//! Rebuilds: their progress, and cancelling one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use commerce_http::page::{Page, PageParams};
use commerce_http::{ApiError, ApiPath, ApiQuery};
use commerce_projections::rebuild::{self, CancelError, RebuildProgress, RebuildState};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{Admin, AdminState};

/// A rebuild's progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct RebuildView {
    pub rebuild_id: Uuid,
    pub projection: String,
    /// `pending`, `bulk`, `catching_up`, `swapping`, `completed`, `failed` or `cancelled`.
    #[schema(value_type = String)]
    pub state: RebuildState,
    pub events_done: i64,
    /// As far as known: it grows while commands keep arriving.
    pub events_total: i64,
    pub events_per_second: f64,
    /// Unknown until a rate is, and once it has ended.
    pub eta_seconds: Option<f64>,
    /// Events that kept failing, parked as dead letters of the rebuilt projection.
    pub events_parked: i64,
    /// How many times a process took over from a checkpoint.
    pub resumes: i32,
    pub cancel_requested: bool,
    pub error: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<RebuildProgress> for RebuildView {
    fn from(p: RebuildProgress) -> Self {
        Self {
            rebuild_id: p.rebuild_id,
            projection: p.projection,
            state: p.state,
            events_done: p.events_done,
            events_total: p.events_total,
            events_per_second: p.events_per_second,
            eta_seconds: p.eta_seconds,
            events_parked: p.events_parked,
            resumes: p.resumes,
            cancel_requested: p.cancel_requested,
            error: p.error,
            requested_at: p.requested_at,
            updated_at: p.updated_at,
            finished_at: p.finished_at,
        }
    }
}

/// Rebuilds, newest first.
#[utoipa::path(get, path = "/v1/admin/rebuilds", tag = "admin", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, description = "rebuilds", body = Page<RebuildView>),
              (status = 400, description = "bad cursor or limit", body = commerce_http::problem::Problem),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "not an admin", body = commerce_http::problem::Problem)))]
pub async fn list(
    _: Admin,
    State(state): State<AdminState>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<Page<RebuildView>>, ApiError> {
    let limit = page.strict_limit()?;
    let after = page.cursor::<(commerce_http::page::CursorTime, Uuid)>()?;
    let rows = rebuild::list(&state.pool, after.map(|(at, id)| (at.0, id)), limit + 1).await?;
    let page = Page::from_rows(rows, limit, |r| (r.requested_at, r.rebuild_id));
    Ok(Json(Page {
        items: page.items.into_iter().map(RebuildView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// A rebuild's progress.
#[utoipa::path(get, path = "/v1/admin/rebuilds/{rebuild_id}", tag = "admin", security(("bearer" = [])),
    params(("rebuild_id" = Uuid, Path)),
    responses((status = 200, description = "its progress", body = RebuildView),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "not an admin", body = commerce_http::problem::Problem),
              (status = 404, description = "no such rebuild", body = commerce_http::problem::Problem)))]
pub async fn progress(
    _: Admin,
    State(state): State<AdminState>,
    ApiPath(rebuild_id): ApiPath<Uuid>,
) -> Result<Json<RebuildView>, ApiError> {
    rebuild::progress(&state.pool, rebuild_id)
        .await?
        .map(|p| Json(p.into()))
        .ok_or_else(|| ApiError::not_found(format!("no rebuild {rebuild_id}")))
}

/// Cancels a rebuild: a pending one at once, a running one at its next batch (the live read
/// model never changed).
#[utoipa::path(post, path = "/v1/admin/rebuilds/{rebuild_id}/cancel", tag = "admin", security(("bearer" = [])),
    params(("rebuild_id" = Uuid, Path)),
    responses((status = 202, description = "cancelled or asked to stop", body = RebuildView),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "not an admin", body = commerce_http::problem::Problem),
              (status = 404, description = "no such rebuild", body = commerce_http::problem::Problem),
              (status = 409, description = "it has already ended", body = commerce_http::problem::Problem)))]
pub async fn cancel(
    _: Admin,
    State(state): State<AdminState>,
    ApiPath(rebuild_id): ApiPath<Uuid>,
) -> Result<(StatusCode, Json<RebuildView>), ApiError> {
    let progress = rebuild::cancel(&state.pool, rebuild_id)
        .await
        .map_err(|error| match error {
            CancelError::NotFound(_) => ApiError::not_found(error.to_string()),
            CancelError::Ended(_) => ApiError::conflict(error.to_string()),
            CancelError::Database(error) => ApiError::internal(error),
        })?;
    Ok((StatusCode::ACCEPTED, Json(progress.into())))
}

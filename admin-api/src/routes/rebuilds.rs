//! Rebuilds: their progress, and cancelling one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use commerce_http::page::{Page, PageParams};
use commerce_http::{ApiError, ApiPath, ApiQuery};
use commerce_projections::rebuild::{self, CancelError, RebuildProgress};
use uuid::Uuid;

use crate::{Admin, AdminState};

/// Rebuilds, newest first.
#[utoipa::path(get, path = "/v1/admin/rebuilds", tag = "admin", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, description = "rebuilds", body = Page<RebuildProgress>),
              (status = 400, description = "bad cursor or limit", body = commerce_http::problem::Problem),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "not an admin", body = commerce_http::problem::Problem)))]
pub async fn list(
    _: Admin,
    State(state): State<AdminState>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<Page<RebuildProgress>>, ApiError> {
    let limit = page.strict_limit()?;
    let after = page.cursor::<(commerce_http::page::CursorTime, Uuid)>()?;
    let rows = rebuild::list(&state.pool, after.map(|(at, id)| (at.0, id)), limit + 1).await?;
    Ok(Json(Page::from_rows(rows, limit, |r| {
        (r.requested_at, r.rebuild_id)
    })))
}

/// A rebuild's progress.
#[utoipa::path(get, path = "/v1/admin/rebuilds/{rebuild_id}", tag = "admin", security(("bearer" = [])),
    params(("rebuild_id" = Uuid, Path)),
    responses((status = 200, description = "its progress", body = RebuildProgress),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "not an admin", body = commerce_http::problem::Problem),
              (status = 404, description = "no such rebuild", body = commerce_http::problem::Problem)))]
pub async fn progress(
    _: Admin,
    State(state): State<AdminState>,
    ApiPath(rebuild_id): ApiPath<Uuid>,
) -> Result<Json<RebuildProgress>, ApiError> {
    rebuild::progress(&state.pool, rebuild_id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no rebuild {rebuild_id}")))
}

/// Cancels a rebuild: a pending one at once, a running one at its next batch (the live read
/// model never changed).
#[utoipa::path(post, path = "/v1/admin/rebuilds/{rebuild_id}/cancel", tag = "admin", security(("bearer" = [])),
    params(("rebuild_id" = Uuid, Path)),
    responses((status = 202, description = "cancelled or asked to stop", body = RebuildProgress),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "not an admin", body = commerce_http::problem::Problem),
              (status = 404, description = "no such rebuild", body = commerce_http::problem::Problem),
              (status = 409, description = "it has already ended", body = commerce_http::problem::Problem)))]
pub async fn cancel(
    _: Admin,
    State(state): State<AdminState>,
    ApiPath(rebuild_id): ApiPath<Uuid>,
) -> Result<(StatusCode, Json<RebuildProgress>), ApiError> {
    let progress = rebuild::cancel(&state.pool, rebuild_id)
        .await
        .map_err(|error| match error {
            CancelError::NotFound(_) => ApiError::not_found(error.to_string()),
            CancelError::Ended(_) => ApiError::conflict(error.to_string()),
            CancelError::Database(error) => ApiError::internal(error),
        })?;
    Ok((StatusCode::ACCEPTED, Json(progress)))
}

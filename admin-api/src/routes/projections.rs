//! Every projection's progress, and starting a rebuild of one.

use std::collections::HashMap;

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use commerce_http::{ApiError, ApiPath};
use commerce_projections::rebuild::{self, RebuildState, StartError};
use commerce_projections::{dead_letters, positions, Projection};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{Admin, AdminState};
use commerce_projections::rebuild::RebuildProgress;

/// A rebuild under way.
#[derive(Debug, Serialize, ToSchema)]
pub struct RebuildRef {
    pub rebuild_id: Uuid,
    #[schema(value_type = String)]
    pub state: RebuildState,
}

/// A projection and how far it is.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionView {
    pub name: String,
    /// The highest global position applied (0 before its first batch).
    pub position: i64,
    /// Every followed event of a transaction below it is applied (xid8, as a number).
    pub horizon: i64,
    /// How old the last applied event was when applied; 0 once caught up.
    pub lag_seconds: f64,
    /// Messages not yet delivered or acked, at the worker's last look.
    pub pending: i64,
    /// `starting`, `running`, `failing` or `stopped`; `starting` before its worker first reported.
    pub state: String,
    pub last_error: Option<String>,
    pub last_applied_at: Option<DateTime<Utc>>,
    /// Its events still parked.
    pub dead_letters: i64,
    /// Whether it can be rebuilt (the saga trigger cannot: it owns no tables).
    pub rebuildable: bool,
    /// The rebuild under way, if one is.
    pub rebuild: Option<RebuildRef>,
    /// Its partitions' watermarks when it runs as partitions (`COMMERCE_PROJECTION_PARTITIONS`);
    /// empty when it runs whole. Its own `horizon` is the lowest of theirs.
    pub partitions: Vec<PartitionView>,
}

/// One partition of a projection and how far it is.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartitionView {
    /// This partition, from 0.
    pub partition: i32,
    /// How many partitions the projection runs as.
    pub of: i32,
    /// Every event of this partition of a transaction below it is applied (xid8, as a number).
    pub horizon: i64,
    /// Messages its consumer had not delivered or not seen acked, at the last look.
    pub pending: i64,
    pub updated_at: DateTime<Utc>,
}

/// Every projection of the engine.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionList {
    pub items: Vec<ProjectionView>,
}

/// Every projection with its position, lag, state, dead letters and rebuild under way.
#[utoipa::path(get, path = "/v1/admin/projections", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "the projections, by name", body = ProjectionList),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "not an admin", body = commerce_http::problem::Problem)))]
pub async fn list(
    _: Admin,
    State(state): State<AdminState>,
) -> Result<Json<ProjectionList>, ApiError> {
    let mut progress: HashMap<String, positions::ProjectionPosition> = positions::list(&state.pool)
        .await?
        .into_iter()
        .map(|p| (p.name.clone(), p))
        .collect();
    let mut partitions: HashMap<String, Vec<PartitionView>> = HashMap::new();
    for row in positions::partitions(&state.pool).await? {
        partitions
            .entry(row.projection)
            .or_default()
            .push(PartitionView {
                partition: row.partition,
                of: row.partitions,
                horizon: row.horizon,
                pending: row.pending,
                updated_at: row.updated_at,
            });
    }
    let parked = dead_letters::parked_counts(&state.pool).await?;
    let running = running_rebuilds(&state).await?;
    let mut items: Vec<ProjectionView> = state
        .projections
        .iter()
        .map(|projection| {
            let name = projection.name();
            let position = progress.remove(name);
            ProjectionView {
                name: name.to_owned(),
                position: position.as_ref().map_or(0, |p| p.position),
                horizon: position.as_ref().map_or(0, |p| p.horizon),
                lag_seconds: position.as_ref().map_or(0.0, |p| p.lag_seconds),
                pending: position.as_ref().map_or(0, |p| p.pending),
                state: position
                    .as_ref()
                    .map_or_else(|| "starting".to_owned(), |p| p.state.clone()),
                last_error: position.as_ref().and_then(|p| p.last_error.clone()),
                last_applied_at: position.as_ref().and_then(|p| p.last_applied_at),
                dead_letters: parked.get(name).copied().unwrap_or(0),
                rebuildable: rebuild::rebuildable(&state.projections, name).is_ok(),
                rebuild: running.get(name).map(|(rebuild_id, state)| RebuildRef {
                    rebuild_id: *rebuild_id,
                    state: *state,
                }),
                partitions: partitions.remove(name).unwrap_or_default(),
            }
        })
        .collect();
    items.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(ProjectionList { items }))
}

/// The rebuild under way of each projection that has one (at most one each: a unique index).
async fn running_rebuilds(
    state: &AdminState,
) -> anyhow::Result<HashMap<String, (Uuid, RebuildState)>> {
    let rows: Vec<(String, Uuid, RebuildState)> = sqlx::query_as(
        "SELECT projection, rebuild_id, state FROM projection_rebuilds \
         WHERE state IN ('pending', 'bulk', 'catching_up', 'swapping')",
    )
    .fetch_all(&state.pool)
    .await
    .context("listing the rebuilds under way")?;
    Ok(rows
        .into_iter()
        .map(|(projection, id, state)| (projection, (id, state)))
        .collect())
}

/// Starts a rebuild of the projection: a running engine's rebuild runner takes it up, and reads
/// keep being served from the live tables until the rebuilt ones are swapped in.
#[utoipa::path(post, path = "/v1/admin/projections/{name}/rebuild", tag = "admin", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 202, description = "accepted; `Location` names its progress", body = RebuildProgress),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "not an admin", body = commerce_http::problem::Problem),
              (status = 404, description = "no such projection", body = commerce_http::problem::Problem),
              (status = 409, description = "a rebuild of it is under way; its id is the problem's `rebuild_id`", body = commerce_http::problem::Problem),
              (status = 422, description = "it cannot be rebuilt (the saga trigger)", body = commerce_http::problem::Problem)))]
pub async fn start_rebuild(
    _: Admin,
    State(state): State<AdminState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    let progress = rebuild::start(&state.pool, &state.projections, &name)
        .await
        .map_err(|error| match error {
            StartError::UnknownProjection(_) => ApiError::not_found(error.to_string()),
            StartError::NotRebuildable(_) => ApiError::unprocessable(error.to_string()),
            StartError::AlreadyRunning { rebuild_id, .. } => {
                ApiError::conflict(error.to_string()).with_extension("rebuild_id", rebuild_id)
            }
            StartError::Database(error) => ApiError::internal(error),
        })?;
    let location = format!("/v1/admin/rebuilds/{}", progress.rebuild_id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(progress),
    )
        .into_response())
}

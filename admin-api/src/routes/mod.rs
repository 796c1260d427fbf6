//! The admin routes, one file per resource, and their OpenAPI description.

pub mod accounts;
pub mod dead_letters;
pub mod events;
pub mod projections;
pub mod rebuilds;
pub mod sagas;
pub mod streams;

use axum::routing::{get, post};
use axum::Router;
use utoipa::OpenApi;

use crate::AdminState;

/// Every `/v1/admin` route of the operators' contract.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route(
            "/v1/admin/streams/{aggregate_type}/{id}",
            get(streams::stream),
        )
        .route(
            "/v1/admin/streams/{aggregate_type}/{id}/state",
            get(streams::state_as_of),
        )
        .route("/v1/admin/events", get(events::list))
        .route("/v1/admin/events/republish", post(events::start_republish))
        .route(
            "/v1/admin/republishes/{republish_id}",
            get(events::republish_progress),
        )
        .route("/v1/admin/projections", get(projections::list))
        .route(
            "/v1/admin/projections/{name}/rebuild",
            post(projections::start_rebuild),
        )
        .route("/v1/admin/rebuilds", get(rebuilds::list))
        .route("/v1/admin/rebuilds/{rebuild_id}", get(rebuilds::progress))
        .route(
            "/v1/admin/rebuilds/{rebuild_id}/cancel",
            post(rebuilds::cancel),
        )
        .route("/v1/admin/dead-letters", get(dead_letters::list))
        .route(
            "/v1/admin/dead-letters/retry",
            post(dead_letters::retry_all),
        )
        .route("/v1/admin/dead-letters/{id}", get(dead_letters::show))
        .route(
            "/v1/admin/dead-letters/{id}/retry",
            post(dead_letters::retry),
        )
        .route("/v1/admin/sagas", get(sagas::list))
        .route("/v1/admin/sagas/{id}", get(sagas::show))
        .route("/v1/admin/sagas/{id}/retry", post(sagas::retry))
        .route("/v1/admin/accounts/{id}/revoke", post(accounts::revoke))
        .with_state(state)
}

/// The OpenAPI description of the admin routes.
#[derive(OpenApi)]
#[openapi(paths(
    streams::stream,
    streams::state_as_of,
    events::list,
    events::start_republish,
    events::republish_progress,
    projections::list,
    projections::start_rebuild,
    rebuilds::list,
    rebuilds::progress,
    rebuilds::cancel,
    dead_letters::list,
    dead_letters::show,
    dead_letters::retry,
    dead_letters::retry_all,
    sagas::list,
    sagas::show,
    sagas::retry,
    accounts::revoke,
))]
pub struct ApiDoc;

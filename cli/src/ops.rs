//! Operational routes: health, metrics, and (from `openapi`) the OpenAPI document and its viewer.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sqlx::PgPool;

use crate::telemetry::metrics_handle;

/// What readiness depends on.
#[derive(Clone)]
pub struct Dependencies {
    pub pool: PgPool,
    pub nats: async_nats::Client,
}

pub fn router(dependencies: Dependencies) -> Router {
    Router::new()
        .route(
            "/health/live",
            get(|| async { Json(json!({ "status": "live" })) }),
        )
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(dependencies)
        .merge(crate::openapi::router())
}

async fn ready(State(dependencies): State<Dependencies>) -> impl IntoResponse {
    let postgres = sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(&dependencies.pool)
        .await
        .is_ok();
    let nats = dependencies.nats.connection_state() == async_nats::connection::State::Connected;
    let status = if postgres && nats {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |ok: bool| if ok { "up" } else { "down" };
    (
        status,
        Json(json!({ "postgres": word(postgres), "nats": word(nats) })),
    )
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics_handle().render(),
    )
}

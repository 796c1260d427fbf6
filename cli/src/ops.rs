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
    /// NATS and, in a process that runs it, the relay.
    pub health: crate::degraded::Health,
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

/// 200 when Postgres and NATS answer and the relay (where this process runs it) publishes,
/// else 503; the body says what is down, since when and why (see [`crate::degraded`]).
async fn ready(State(dependencies): State<Dependencies>) -> impl IntoResponse {
    let postgres = sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(&dependencies.pool)
        .await
        .map(|_| ())
        .map_err(|error| error.to_string());
    let (body, degraded) = dependencies.health.report(postgres);
    let status = if degraded {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, Json(body))
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics_handle().render(),
    )
}

//! Operational routes: health, metrics, the OpenAPI document and its viewer.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sqlx::PgPool;
use utoipa::OpenApi;
use utoipa_scalar::{Scalar, Servable};

use crate::telemetry::metrics_handle;

/// What readiness depends on.
#[derive(Clone)]
pub struct Dependencies {
    pub pool: PgPool,
    /// NATS and, in a process that runs it, the relay.
    pub health: crate::degraded::Health,
}

/// The whole engine's OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = commerce_command_api::ApiDoc::openapi();
    doc.merge(commerce_query_api::ApiDoc::openapi());
    doc.merge(commerce_admin_api::ApiDoc::openapi());
    doc.info.title = "Commerce engine".into();
    doc.info.description = Some(
        "An event-sourced commerce engine: commands change aggregates whose events are the only truth. \
         Errors are RFC 9457 problem+json; command responses carry ETag and X-Event-Position."
            .into(),
    );
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc
}

pub fn router(dependencies: Dependencies) -> Router {
    let document = openapi();
    Router::new()
        .route(
            "/health/live",
            get(|| async { Json(json!({ "status": "live" })) }),
        )
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(move || async move { Json(openapi()) }))
        .with_state(dependencies)
        .merge(Scalar::with_url("/docs", document))
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

//! Request count and latency by route, for `/metrics`; the request's span (traces).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

/// Middleware recording `http_requests_total` and `http_request_duration_seconds` by route.
pub async fn record_request_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The span of one request: method, route (the matched path, not the raw one), path, request id
/// and, once answered, status. When tracing is on, a `traceparent` header the client sent makes
/// it a child of the client's span.
pub fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    let headers = request.headers();
    let id = headers
        .get(crate::request::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str());
    let method = request.method();
    let span = tracing::info_span!(
        "request",
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
        %method,
        route,
        path = %request.uri().path(),
        request_id = %id,
        status = tracing::field::Empty,
    );
    if commerce_store::trace::enabled() {
        // Named as OpenTelemetry's HTTP conventions say; log lines do without.
        span.record("otel.name", format_args!("{method} {route}"));
        span.record("otel.kind", "server");
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if let Some(parent) = header(commerce_store::trace::TRACEPARENT).and_then(|traceparent| {
            commerce_store::trace::TraceFields::context(
                traceparent,
                header(commerce_store::trace::TRACESTATE),
            )
        }) {
            commerce_store::trace::set_parent(&span, parent);
        }
    }
    span
}

/// Records the status on the request's span (and logs at DEBUG, as tower-http's default does).
pub fn record_status<B>(
    response: &axum::http::Response<B>,
    latency: std::time::Duration,
    span: &tracing::Span,
) {
    let status = response.status().as_u16();
    span.record("status", status);
    tracing::debug!(
        status,
        latency_ms = latency.as_millis(),
        "finished processing request"
    );
}

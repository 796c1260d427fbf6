//! Read-your-writes: a GET with `X-Min-Position: n` waits (bounded) until every projection the
//! route reads has applied global position `n`, else answers 503 with `Retry-After`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use commerce_http::ApiError;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::Reads;

/// The position the client needs reflected, from `X-Min-Position`.
#[derive(Debug, Clone, Copy)]
pub struct MinPosition(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for MinPosition {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get("x-min-position") else {
            return Ok(Self(None));
        };
        value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|v| *v >= 0)
            .map(|v| Self(Some(v)))
            .ok_or_else(|| ApiError::bad_request("X-Min-Position must be a non-negative integer"))
    }
}

impl MinPosition {
    /// Waits until `projections` have applied the position, or answers 503.
    /// The wait runs on the database the request reads (see [`crate::replica`]).
    pub async fn wait(self, state: &Reads, projections: &[&str]) -> Result<(), ApiError> {
        let Some(position) = self.0 else {
            return Ok(());
        };
        let applied = state
            .horizons
            .wait_for(projections, position, state.max_wait())
            .await
            .map_err(|error| state.failed(error))?;
        if applied {
            Ok(())
        } else {
            Err(ApiError::unavailable(
                format!("the read model has not caught up with position {position} yet"),
                1,
            ))
        }
    }
}

/// The version of one aggregate that `projection` has applied, to send with [`versioned`]. Read
/// it before the rows it goes with (see [`commerce_projections::applied_version`]).
pub async fn version(
    state: &Reads,
    projection: &str,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<i64, ApiError> {
    commerce_projections::applied_version(&state.pool, projection, aggregate_type, aggregate_id)
        .await
        .map_err(|error| state.failed(error))
}

/// A JSON resource with a strong `ETag` (a hash of its body); `If-None-Match` gets 304.
pub fn resource(headers: &HeaderMap, body: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let etag = format!("\"{}\"", digest(&bytes));
    conditional(headers, etag, bytes)
}

/// A resource backed by one aggregate: its `ETag` is `"<version>.<digest>"`, the aggregate's
/// version as the read model applied it (what a command's `If-Match` compares: it reads the
/// number before the dot, so this ETag and a command's `"<version>"` are both accepted), then a
/// hash of the body, so that `If-None-Match` still sees what the version does not cover (stock,
/// ratings, a forgotten name).
pub fn versioned(headers: &HeaderMap, version: i64, body: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let etag = format!("\"{version}.{}\"", digest(&bytes));
    conditional(headers, etag, bytes)
}

fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// 304 when `If-None-Match` names `etag` (or `*`), else the body; `ETag` either way.
fn conditional(headers: &HeaderMap, etag: String, bytes: Vec<u8>) -> Response {
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
    let mut response = if matches {
        axum::http::StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
    };
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

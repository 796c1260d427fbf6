//! Read-your-writes: a GET with `X-Min-Position: n` waits (bounded) until every projection the
//! route reads has applied global position `n`, else answers 503 with `Retry-After`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use commerce_http::ApiError;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::QueryState;

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
    pub async fn wait(self, state: &QueryState, projections: &[&str]) -> Result<(), ApiError> {
        let Some(position) = self.0 else {
            return Ok(());
        };
        let applied = commerce_projections::wait_for_position(
            &state.pool,
            projections,
            position,
            state.max_wait,
        )
        .await?;
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

/// A JSON resource with a strong `ETag` (a hash of its body); `If-None-Match` gets 304.
pub fn resource(headers: &HeaderMap, body: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    let etag = format!(
        "\"{}\"",
        digest
            .iter()
            .take(12)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
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

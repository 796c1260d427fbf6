//! What every command request carries besides its body: request id, idempotency key, `If-Match`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use uuid::Uuid;

use crate::ApiError;

/// The header carrying a request's id, set by the edge when the client sent none.
pub const REQUEST_ID: &str = "x-request-id";

/// Request-level facts a command needs.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The request id, as the events' correlation id (a fresh v7 when the id is not a UUID).
    pub correlation_id: Uuid,
    pub idempotency_key: Option<String>,
    /// The version named by `If-Match`.
    pub if_match: Option<i64>,
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or_default().trim();
    if key.is_empty() || key.len() > 200 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad_request(
            "Idempotency-Key must be 1 to 200 visible ASCII characters",
        ));
    }
    Ok(Some(key.to_owned()))
}

/// The version `If-Match` names. A command answers `ETag: "<version>"`; a GET of the same
/// resource (cart, product, order, inventory) answers `"<version>.<digest>"`, whose digest only
/// serves `If-None-Match`: both name the version, and both are accepted (weak or strong).
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get("if-match") else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    let text = text.strip_prefix("W/").unwrap_or(text);
    let tag = text.trim_matches('"');
    let version = tag.split_once('.').map_or(tag, |(version, _)| version);
    version
        .parse::<i64>()
        .ok()
        .filter(|v| *v >= 0)
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(
                "If-Match must be the ETag of this resource from a GET or a command, such as \"3\"",
            )
        })
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let correlation_id = parts
            .headers
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Uuid::parse_str(v).ok())
            .unwrap_or_else(Uuid::now_v7);
        Ok(Self {
            correlation_id,
            idempotency_key: idempotency_key(&parts.headers)?,
            if_match: if_match(&parts.headers)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use super::if_match;

    fn version(value: &str) -> Option<i64> {
        let mut headers = HeaderMap::new();
        headers.insert("if-match", HeaderValue::from_str(value).unwrap());
        if_match(&headers).ok().flatten()
    }

    #[test]
    fn if_match_takes_the_etag_of_a_command_or_of_a_get() {
        assert_eq!(version("\"3\""), Some(3));
        assert_eq!(version("W/\"3\""), Some(3));
        assert_eq!(version("\"3.9f86d081884c7d659a2feaa0\""), Some(3));
        assert_eq!(version("\"9f86d081884c7d659a2feaa0\""), None);
        assert_eq!(version("\"-1\""), None);
    }
}

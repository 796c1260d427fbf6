//! Extractors whose rejections are problem+json like every other error.
//!
//! They are also where text from the client is checked before anything can reach Postgres:
//! `text` and `jsonb` refuse the NUL character (U+0000), so a NUL anywhere in a body, a query
//! parameter or a path segment is refused here, once, rather than failing an append with a 500.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::ApiError;

/// The longest query parameter (name or value, decoded) accepted, in bytes. The longest one
/// this API issues is a name-sorted cursor, about 1,200 characters; everything else is shorter.
pub const MAX_QUERY_PARAMETER: usize = 2_048;

/// `axum::Json`, answering malformed JSON with 400, a wrong shape or a NUL in any text with
/// 422 and an oversize body with 413.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !json_content_type(request.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "send the body as `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(body_rejection)?;
        from_json(&bytes).map(Self)
    }
}

/// `application/json` or any `application/*+json`, as `axum::Json` accepts.
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence.split_once('/').is_some_and(|(kind, subtype)| {
        kind == "application" && (subtype == "json" || subtype.ends_with("+json"))
    })
}

fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large()
    } else {
        ApiError::bad_request(rejection.body_text())
    }
}

/// Parses a JSON document as every body is parsed: malformed JSON is 400, a wrong shape 422,
/// and a NUL in any string or object key 422 naming where it is.
pub fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let axum::Json(value) = axum::Json::<T>::from_bytes(bytes).map_err(json_rejection)?;
    refuse_nul(bytes)?;
    Ok(value)
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => ApiError::unprocessable(format!(
            "the body does not fit the schema: {}",
            e.body_text()
        )),
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::bad_request(format!("the body is not valid JSON: {}", e.body_text()))
        }
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => too_large(),
        other => ApiError::bad_request(other.body_text()),
    }
}

/// Refuses a NUL in any string or key of `json`, a document that has already parsed.
///
/// JSON forbids raw control characters in strings (serde_json enforces it), so a NUL can only
/// be written as the escape `\u0000`. A body without those six bytes is passed without a second
/// parse; one with them (which may only be an escaped backslash followed by `u0000`) is parsed
/// into a `Value` to find out, and to name the field. Lone surrogates (`\ud800`) need no check
/// here: serde_json already refuses them as invalid JSON.
fn refuse_nul(json: &[u8]) -> Result<(), ApiError> {
    if !json.windows(6).any(|w| w == br"\u0000") {
        return Ok(());
    }
    let value: Value = serde_json::from_slice(json)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    let mut path = String::new();
    match nul_at(&value, &mut path) {
        None => Ok(()),
        Some(Nul::Value) if path.is_empty() => Err(ApiError::unprocessable(
            "the body holds a NUL character (U+0000), which text may not contain",
        )),
        Some(Nul::Value) => Err(ApiError::unprocessable(format!(
            "`{path}` holds a NUL character (U+0000), which text may not contain"
        ))),
        Some(Nul::Key) if path.is_empty() => Err(ApiError::unprocessable(
            "a field name holds a NUL character (U+0000), which text may not contain",
        )),
        Some(Nul::Key) => Err(ApiError::unprocessable(format!(
            "a field name in `{path}` holds a NUL character (U+0000), which text may not contain"
        ))),
    }
}

/// Where a NUL was found: in a string value, or in a key of the object at the path.
enum Nul {
    Value,
    Key,
}

/// The first NUL in `value`, leaving `path` (as `a.b[2].c`) pointing at it.
fn nul_at(value: &Value, path: &mut String) -> Option<Nul> {
    match value {
        Value::String(s) => s.contains('\0').then_some(Nul::Value),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let found = nul_at(item, path);
            if found.is_none() {
                path.truncate(len);
            }
            found
        }),
        Value::Object(fields) => {
            if fields.keys().any(|k| k.contains('\0')) {
                return Some(Nul::Key);
            }
            fields.iter().find_map(|(key, field)| {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                let found = nul_at(field, path);
                if found.is_none() {
                    path.truncate(len);
                }
                found
            })
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => None,
    }
}

/// The body limit, as a problem.
pub fn too_large() -> ApiError {
    ApiError::payload_too_large("the request body is larger than the 1 MiB limit")
}

/// `axum::extract::Path`, answering an invalid segment with 400.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|rejection| {
                ApiError::bad_request(format!("invalid path: {}", rejection.body_text()))
            })?;
        // Segments arrive percent-decoded: `%00` is a NUL by now.
        if let Some((name, _)) = raw.iter().find(|(_, value)| value.contains('\0')) {
            return Err(ApiError::bad_request(format!(
                "invalid path: `{name}` holds a NUL character (U+0000)"
            )));
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|rejection: PathRejection| {
                ApiError::bad_request(format!("invalid path: {}", rejection.body_text()))
            })
    }
}

/// `axum::extract::Query`, answering an invalid parameter, one holding a NUL or one longer than
/// `MAX_QUERY_PARAMETER` with 400. Every parameter is checked, including those `T` ignores or
/// reads through a map (`attr.<name>` facets).
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        check_query(&parts.uri)?;
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection: QueryRejection| {
                ApiError::bad_request(format!("invalid query: {}", rejection.body_text()))
            })
    }
}

/// Refuses a query with a parameter holding a NUL or longer than `MAX_QUERY_PARAMETER`.
fn check_query(uri: &axum::http::Uri) -> Result<(), ApiError> {
    let axum::extract::Query(pairs) = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
        uri,
    )
    .map_err(|rejection: QueryRejection| {
        ApiError::bad_request(format!("invalid query: {}", rejection.body_text()))
    })?;
    for (name, value) in &pairs {
        if name.contains('\0') {
            return Err(ApiError::bad_request(
                "invalid query: a parameter name holds a NUL character (U+0000)",
            ));
        }
        if value.contains('\0') {
            return Err(ApiError::bad_request(format!(
                "invalid query: `{name}` holds a NUL character (U+0000)"
            )));
        }
        if name.len() > MAX_QUERY_PARAMETER || value.len() > MAX_QUERY_PARAMETER {
            return Err(ApiError::bad_request(format!(
                "invalid query: a parameter is longer than {MAX_QUERY_PARAMETER} bytes"
            )));
        }
    }
    Ok(())
}

/// An optional JSON body: `None` when the request has none, otherwise as `ApiJson`.
pub struct OptionalJson<T>(pub Option<T>);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(body_rejection)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(None));
        }
        from_json(&bytes).map(|value| Self(Some(value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(json: &str) -> Result<Value, ApiError> {
        from_json(json.as_bytes())
    }

    #[test]
    fn a_nul_in_a_string_is_refused_naming_its_field() {
        let error = parse(r#"{"a": {"b": ["ok", "x\u0000"]}}"#).unwrap_err();
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(error.detail().contains("`a.b[1]`"), "{}", error.detail());
        let error = parse(r#""\u0000""#).unwrap_err();
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[test]
    fn a_nul_in_a_key_is_refused_naming_its_object() {
        let error = parse(r#"{"attributes": {"a\u0000": 1}}"#).unwrap_err();
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            error.detail().contains("`attributes`"),
            "{}",
            error.detail()
        );
    }

    #[test]
    fn an_escaped_backslash_before_u0000_is_text_not_a_nul() {
        let value = parse(r#"{"a": "\\u0000"}"#).unwrap();
        assert_eq!(value["a"], r"\u0000");
    }

    #[test]
    fn a_raw_nul_byte_and_a_lone_surrogate_are_not_json() {
        let error = from_json::<Value>(b"{\"a\": \"x\0\"}").unwrap_err();
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        let error = parse(r#"{"a": "\ud800"}"#).unwrap_err();
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn a_wrong_shape_is_still_422() {
        let error = from_json::<HashMap<String, u32>>(br#"{"a": "two"}"#).unwrap_err();
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[test]
    fn json_and_json_suffixed_content_types_are_json() {
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            headers
        };
        for json in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(json_content_type(&headers(json)), "{json}");
        }
        for other in ["text/plain", "application/x-ndjson", "json"] {
            assert!(!json_content_type(&headers(other)), "{other}");
        }
        assert!(!json_content_type(&HeaderMap::new()));
    }

    #[test]
    fn a_query_with_a_nul_or_an_overlong_parameter_is_refused() {
        let uri = |q: &str| format!("/x?{q}").parse::<axum::http::Uri>().unwrap();
        assert!(check_query(&uri("q=mug&attr.colour=red")).is_ok());
        for bad in ["q=mug%00", "attr.c%00=red", "%00=1"] {
            let error = check_query(&uri(bad)).unwrap_err();
            assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{bad}");
        }
        let long = format!("q={}", "x".repeat(MAX_QUERY_PARAMETER + 1));
        assert!(check_query(&uri(&long)).is_err());
    }
}

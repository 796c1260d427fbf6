//! Extractors whose rejections are problem+json like every other error.
//!
//! They are also where text from the client is checked before anything can reach Postgres:
//! `text` and `jsonb` refuse the NUL character (U+0000), so a NUL anywhere in a body, a query
//! parameter or a path segment is refused here, once, rather than failing an append with a 500.

use axum::body::Bytes;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use commerce_domain::values::Validate;
use eserde::EDeserialize;
use serde::de::DeserializeOwned;
use serde_json::error::Category;
use serde_json::Value;

use crate::problem::{pointer_of, FieldError, Location};
use crate::{wording, ApiError};

/// The longest query parameter (name or value, decoded) accepted, in bytes. The longest one
/// this API issues is a name-sorted cursor, about 1,200 characters; everything else is shorter.
pub const MAX_QUERY_PARAMETER: usize = 2_048;

/// `axum::Json`, answering malformed JSON with 400, every field of a wrong shape and every NUL
/// in any text at once with 422 (`errors[]`, a JSON pointer each), and an oversize body with 413.
///
/// `T` derives `eserde::Deserialize` rather than `serde::Deserialize` (the same behaviour, plus a
/// second pass that collects every error when the first one fails).
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: for<'de> EDeserialize<'de>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = json_body(request, state).await?;
        from_json(&bytes).map(Self)
    }
}

/// `ApiJson` that also checks the body against its rules ([`Validate`]) before the handler
/// runs: every field of a wrong shape and every field that breaks a rule is one `errors[]`
/// entry of one 422, with its JSON pointer.
pub struct ValidJson<T>(pub T);

impl<S, T> FromRequest<S> for ValidJson<T>
where
    T: for<'de> EDeserialize<'de> + Validate,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = json_body(request, state).await?;
        from_valid_json(&bytes).map(Self)
    }
}

/// The body of a request that says it is JSON.
async fn json_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    if !json_content_type(request.headers()) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "send the body as `Content-Type: application/json`",
        ));
    }
    Bytes::from_request(request, state)
        .await
        .map_err(body_rejection)
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

/// Parses a JSON document as every body is parsed: malformed JSON is 400; a NUL in any string
/// or object key, and every field that does not fit `T`, are 422 with one `errors[]` entry each.
pub fn from_json<T: for<'de> EDeserialize<'de>>(bytes: &[u8]) -> Result<T, ApiError> {
    match read::<T>(bytes)? {
        Read::Fits(value) => Ok(value),
        Read::Misfits { errors, .. } => Err(ApiError::invalid_fields(errors)),
    }
}

/// As [`from_json`], then the rules of `T` ([`Validate`]): every field that breaks one is a 422
/// entry too, beside the fields of a wrong shape when it can still be read (the body fits but
/// for unknown fields).
pub fn from_valid_json<T>(bytes: &[u8]) -> Result<T, ApiError>
where
    T: for<'de> EDeserialize<'de> + Validate,
{
    let (mut errors, value) = match read::<T>(bytes)? {
        Read::Fits(value) => (Vec::new(), value),
        Read::Misfits {
            errors,
            read: Some(value),
        } => (errors, value),
        Read::Misfits { errors, read: None } => return Err(ApiError::invalid_fields(errors)),
    };
    for violation in value.violations() {
        let error = FieldError::from(violation);
        if !errors.iter().any(|known| known.pointer == error.pointer) {
            errors.push(error);
        }
    }
    if errors.is_empty() {
        Ok(value)
    } else {
        Err(ApiError::invalid_fields(errors))
    }
}

/// What reading a body as a `T` found.
enum Read<T> {
    Fits(T),
    /// Every field that does not fit, and the body read without its unknown fields when they
    /// were all that kept it from fitting.
    Misfits {
        errors: Vec<FieldError>,
        read: Option<T>,
    },
}

/// `bytes` as a `T`; `Err` for malformed JSON (400) and a NUL (422).
fn read<T: for<'de> EDeserialize<'de>>(bytes: &[u8]) -> Result<Read<T>, ApiError> {
    let mut value = parse(bytes)?;
    refuse_nul(bytes, &value)?;
    let mut errors = match typed::<T>(bytes) {
        Ok(typed) => return Ok(Read::Fits(typed)),
        Err(errors) => errors,
    };
    let mut read = None;
    // eserde stops reading an object at its first unknown field: without the unknown fields,
    // the rest of the object is read too. Each round removes at least one field.
    for _ in 0..MAX_UNKNOWN_FIELD_ROUNDS {
        let unknown: Vec<String> = errors
            .iter()
            .filter(|(_, unknown)| *unknown)
            .map(|(error, _)| error.pointer.clone())
            .filter(|pointer| value.pointer(pointer).is_some())
            .collect();
        if unknown.is_empty() {
            break;
        }
        for pointer in &unknown {
            remove(&mut value, pointer);
        }
        let Ok(again) = serde_json::to_vec(&value) else {
            break;
        };
        let more = match typed::<T>(&again) {
            Ok(typed) => {
                read = Some(typed);
                break;
            }
            Err(more) => more,
        };
        for error in more {
            if !errors
                .iter()
                .any(|(known, _)| known.pointer == error.0.pointer)
            {
                errors.push(error);
            }
        }
    }
    Ok(Read::Misfits {
        errors: errors.into_iter().map(|(error, _)| error).collect(),
        read,
    })
}

/// Rounds of removing unknown fields and reading again: objects nested this deep, each with an
/// unknown field before a wrong one, are all reported.
const MAX_UNKNOWN_FIELD_ROUNDS: usize = 4;

/// `bytes` as a `T`, or every field error, each with whether it is an unknown field.
fn typed<T: for<'de> EDeserialize<'de>>(bytes: &[u8]) -> Result<T, Vec<(FieldError, bool)>> {
    eserde::json::from_slice::<T>(bytes).map_err(|errors| {
        errors
            .iter()
            .map(|error| {
                let path: Vec<String> = error
                    .path()
                    .map(|path| path.iter().map(segment).collect())
                    .unwrap_or_default();
                let unknown = error.message().starts_with("unknown field `");
                let field = wording::field_error(Location::Body, &path, error.message());
                (field, unknown)
            })
            .collect()
    })
}

/// Removes the member at the JSON pointer `pointer` from its object.
fn remove(value: &mut Value, pointer: &str) {
    let Some((parent, key)) = pointer.rsplit_once('/') else {
        return;
    };
    let key = key.replace("~1", "/").replace("~0", "~");
    if let Some(Value::Object(members)) = value.pointer_mut(parent) {
        members.remove(&key);
    }
}

/// Parses a document this API wrote itself (a cursor): any fault is `Err`, a NUL too.
pub(crate) fn from_own_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value = parse(bytes)?;
    refuse_nul(bytes, &value)?;
    serde_json::from_value(value).map_err(|_| ApiError::bad_request("not a document of ours"))
}

fn segment(segment: &eserde::path::Segment) -> String {
    match segment {
        eserde::path::Segment::Seq { index } => index.to_string(),
        eserde::path::Segment::Map { key } => key.clone(),
        eserde::path::Segment::Enum { variant } => variant.clone(),
    }
}

/// `json` as a document, or 400 saying where it breaks off. A full parse, not a skim: skipping
/// a string does not check its escapes (a lone surrogate such as `\ud800`).
fn parse(json: &[u8]) -> Result<Value, ApiError> {
    let error = match serde_json::from_slice::<Value>(json) {
        Ok(value) => return Ok(value),
        Err(error) => error,
    };
    let (line, column) = (error.line(), error.column());
    let text = error.to_string();
    let reason = text
        .rfind(" at line ")
        .map_or(text.as_str(), |at| &text[..at]);
    Err(ApiError::bad_request(match error.classify() {
        Category::Eof if json.iter().all(u8::is_ascii_whitespace) => {
            "the body is empty; send a JSON document".to_owned()
        }
        Category::Eof => {
            format!("the body is not valid JSON: it ends too early (line {line}, column {column})")
        }
        _ => format!("the body is not valid JSON: {reason} (line {line}, column {column})"),
    }))
}

/// Refuses a NUL in any string or key of `json`, a document that has already parsed, with one
/// field error for each.
///
/// JSON forbids raw control characters in strings (serde_json enforces it), so a NUL can only
/// be written as the escape `\u0000`. A body without those six bytes is passed without a walk;
/// one with them (which may only be an escaped backslash followed by `u0000`) is walked to find
/// out, and to name the fields. Lone surrogates (`\ud800`) need no check here: serde_json
/// already refuses them as invalid JSON.
fn refuse_nul(json: &[u8], value: &Value) -> Result<(), ApiError> {
    if !json.windows(6).any(|w| w == br"\u0000") {
        return Ok(());
    }
    let mut errors = Vec::new();
    nuls(value, &mut Vec::new(), &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid_fields(errors))
    }
}

/// Every NUL in `value` (at `path`), as field errors.
fn nuls(value: &Value, path: &mut Vec<String>, errors: &mut Vec<FieldError>) {
    match value {
        Value::String(s) if s.contains('\0') => errors.push(FieldError::body(
            pointer_of(path),
            format!(
                "{} holds a NUL character (U+0000), which text may not contain",
                wording::name(Location::Body, path)
            ),
        )),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                nuls(item, path, errors);
                path.pop();
            }
        }
        Value::Object(fields) => {
            for (key, field) in fields {
                if key.contains('\0') {
                    let within = match path.is_empty() {
                        true => String::new(),
                        false => format!(" in {}", wording::name(Location::Body, path)),
                    };
                    errors.push(FieldError::body(
                        pointer_of(path),
                        format!(
                            "a field name{within} holds a NUL character (U+0000), which text may \
                             not contain"
                        ),
                    ));
                    continue;
                }
                path.push(key.clone());
                nuls(field, path, errors);
                path.pop();
            }
        }
        Value::String(_) | Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// The body limit, as a problem.
pub fn too_large() -> ApiError {
    ApiError::payload_too_large("the request body is larger than the 1 MiB limit")
}

/// `axum::extract::Path`, answering an invalid segment with 400 naming the parameter
/// (`errors[]`, `in: path`).
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
            return Err(ApiError::invalid_parameters(vec![FieldError::path(
                name,
                format!("{name} holds a NUL character (U+0000)"),
            )]));
        }
        // The only parameter, for errors that do not say which one they are about.
        let only = match raw.iter().collect::<Vec<_>>().as_slice() {
            [(name, _)] => Some((*name).to_owned()),
            _ => None,
        };
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|rejection| path_rejection(rejection, only.as_deref()))
    }
}

fn path_rejection(rejection: PathRejection, only: Option<&str>) -> ApiError {
    let PathRejection::FailedToDeserializePathParams(error) = rejection else {
        return ApiError::bad_request(format!("invalid path: {}", rejection.body_text()));
    };
    let named = |key: &str, message: String| {
        ApiError::invalid_parameters(vec![wording::field_error(
            Location::Path,
            &[key.to_owned()],
            &message,
        )])
    };
    let mismatch = |value: &str, expected: &str| {
        format!("invalid type: string \"{value}\", expected {expected}")
    };
    match error.into_kind() {
        ErrorKind::ParseErrorAtKey {
            key,
            value,
            expected_type,
        } => named(&key, mismatch(&value, expected_type)),
        ErrorKind::DeserializeError {
            key,
            value: _,
            message,
        } => named(&key, message),
        ErrorKind::ParseError {
            value,
            expected_type,
        } => match only {
            Some(key) => named(key, mismatch(&value, expected_type)),
            None => ApiError::bad_request(format!("invalid path: `{value}` does not fit")),
        },
        ErrorKind::Message(message) => match only {
            Some(key) => named(key, message),
            None => ApiError::bad_request(format!("invalid path: {message}")),
        },
        ErrorKind::InvalidUtf8InPathParam { key } => named(&key, "must be UTF-8".into()),
        other => ApiError::bad_request(format!("invalid path: {other}")),
    }
}

/// `axum::extract::Query`, answering an invalid parameter, one holding a NUL or one longer than
/// `MAX_QUERY_PARAMETER` with 400 naming it (`errors[]`, `in: query`). Every parameter is
/// checked, including those `T` ignores or reads through a map (`attr.<name>` facets).
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        check_query(&parts.uri)?;
        let query = parts.uri.query().unwrap_or_default();
        let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        // serde stops at the first parameter that does not fit: without it, the rest are read
        // too, so that every one is reported. Each round removes at least one parameter.
        let mut errors: Vec<FieldError> = Vec::new();
        for _ in 0..=pairs.len() {
            let (path, message) = match query_as::<T>(&pairs) {
                Ok(value) if errors.is_empty() => return Ok(Self(value)),
                Ok(_) => break,
                Err(error) => error,
            };
            let error = wording::field_error(Location::Query, &path, &message);
            let name = path.first().cloned();
            if !errors.iter().any(|known| known.pointer == error.pointer) {
                errors.push(error);
            }
            let Some(name) = name else { break };
            let before = pairs.len();
            pairs.retain(|(key, _)| *key != name);
            if pairs.len() == before {
                break;
            }
        }
        Err(ApiError::invalid_parameters(errors))
    }
}

/// The query `pairs` as a `T`, or the path to the parameter that does not fit and why.
fn query_as<T: DeserializeOwned>(pairs: &[(String, String)]) -> Result<T, (Vec<String>, String)> {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let deserializer =
        serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path: Vec<String> = error
            .path()
            .iter()
            .filter_map(|segment| match segment {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                _ => None,
            })
            .collect();
        (path, error.into_inner().to_string())
    })
}

/// Refuses a query with a parameter holding a NUL or longer than `MAX_QUERY_PARAMETER`.
fn check_query(uri: &axum::http::Uri) -> Result<(), ApiError> {
    let query = uri.query().unwrap_or_default();
    let mut errors = Vec::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if name.contains('\0') {
            return Err(ApiError::bad_request(
                "invalid query: a parameter name holds a NUL character (U+0000)",
            ));
        }
        if name.len() > MAX_QUERY_PARAMETER {
            return Err(ApiError::bad_request(format!(
                "invalid query: a parameter name is longer than {MAX_QUERY_PARAMETER} bytes"
            )));
        }
        if value.contains('\0') {
            errors.push(FieldError::query(
                &name,
                format!("{name} holds a NUL character (U+0000)"),
            ));
        } else if value.len() > MAX_QUERY_PARAMETER {
            errors.push(FieldError::query(
                &name,
                format!("{name} is longer than {MAX_QUERY_PARAMETER} bytes"),
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid_parameters(errors))
    }
}

/// An optional JSON body: `None` when the request has none, otherwise as `ApiJson`.
pub struct OptionalJson<T>(pub Option<T>);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    T: for<'de> EDeserialize<'de>,
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

    fn parse_body(json: &str) -> Result<Value, ApiError> {
        from_json(json.as_bytes())
    }

    #[test]
    fn a_nul_in_a_string_is_refused_naming_its_field() {
        let error = parse_body(r#"{"a": {"b": ["ok", "x\u0000"]}, "c": "\u0000"}"#).unwrap_err();
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let pointers: Vec<&str> = error.errors().iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, ["/a/b/1", "/c"]);
        assert!(error.detail().contains("a.b[1]"), "{}", error.detail());
        let error = parse_body(r#""\u0000""#).unwrap_err();
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[test]
    fn a_nul_in_a_key_is_refused_naming_its_object() {
        let error = parse_body(r#"{"attributes": {"a\u0000": 1}}"#).unwrap_err();
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error.errors()[0].pointer, "/attributes");
        assert!(error.detail().contains("attributes"), "{}", error.detail());
    }

    #[test]
    fn an_escaped_backslash_before_u0000_is_text_not_a_nul() {
        let value = parse_body(r#"{"a": "\\u0000"}"#).unwrap();
        assert_eq!(value["a"], r"\u0000");
    }

    #[test]
    fn a_raw_nul_byte_and_a_lone_surrogate_are_not_json() {
        let error = from_json::<Value>(b"{\"a\": \"x\0\"}").unwrap_err();
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        let error = parse_body(r#"{"a": "\ud800"}"#).unwrap_err();
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

    /// A product-like body, for the shape tests.
    #[derive(Debug, eserde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Draft {
        name: String,
        price: Price,
        #[serde(default)]
        variants: Vec<Line>,
    }

    #[derive(Debug, eserde::Deserialize)]
    #[allow(dead_code)]
    struct Price {
        amount: i64,
        currency: String,
    }

    #[derive(Debug, eserde::Deserialize)]
    #[allow(dead_code)]
    struct Line {
        quantity: u32,
    }

    #[test]
    fn every_field_that_does_not_fit_is_reported_at_once_with_its_pointer() {
        // The unknown field first: eserde alone would stop reading the object there.
        let body = r#"{"colour": "red", "name": 7, "price": {"amount": "19.99"},
            "variants": [{"quantity": 1}, {"quantity": -2}]}"#;
        let error = from_json::<Draft>(body.as_bytes()).unwrap_err();
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let mut found: Vec<(&str, &str)> = error
            .errors()
            .iter()
            .map(|e| (e.pointer.as_str(), e.detail.as_str()))
            .collect();
        found.sort();
        assert_eq!(
            found,
            [
                ("/colour", "unknown field `colour`; the fields here are `name`, `price`, `variants`"),
                ("/name", "name must be a string, not 7"),
                (
                    "/price/amount",
                    "price.amount must be an integer number of minor units (1999 for 19.99), not \"19.99\""
                ),
                ("/price/currency", "price.currency is required"),
                ("/variants/1/quantity", "variants[1].quantity must not be negative"),
            ]
        );
        for serde_words in ["invalid type", "expected struct", "at line"] {
            assert!(!error.detail().contains(serde_words), "{}", error.detail());
        }
    }

    /// A restock-like body with a rule.
    #[derive(Debug, eserde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Restock {
        quantity: i64,
    }

    impl Validate for Restock {
        fn violations(&self) -> commerce_domain::values::Violations {
            let mut violations = commerce_domain::values::Violations::default();
            if self.quantity < 1 {
                violations.add(&["quantity"], "quantity must be at least 1");
            }
            violations
        }
    }

    #[test]
    fn a_broken_rule_is_reported_with_its_pointer_beside_unknown_fields() {
        let pointers = |body: &str| -> Vec<String> {
            let error = from_valid_json::<Restock>(body.as_bytes()).unwrap_err();
            assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
            error.errors().iter().map(|e| e.pointer.clone()).collect()
        };
        assert_eq!(pointers(r#"{"quantity": 0}"#), ["/quantity"]);
        assert_eq!(
            pointers(r#"{"note": "x", "quantity": 0}"#),
            ["/note", "/quantity"]
        );
        // A field of a wrong shape leaves nothing to check the rules on.
        assert_eq!(pointers(r#"{"quantity": "none"}"#), ["/quantity"]);
        assert_eq!(
            from_valid_json::<Restock>(br#"{"quantity": 3}"#)
                .unwrap()
                .quantity,
            3
        );
    }

    #[test]
    fn malformed_json_says_where_without_serde_words() {
        let error = from_json::<Value>(br#"{"sku": "#).unwrap_err();
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            error.detail(),
            "the body is not valid JSON: it ends too early (line 1, column 8)"
        );
        let error = from_json::<Value>(b"not json").unwrap_err();
        assert!(
            error.detail().contains("(line 1, column 2)"),
            "{}",
            error.detail()
        );
    }
}

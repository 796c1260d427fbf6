//! RFC 9457 problem details: every error the API answers with.
//!
//! A problem's `type` is `{public URL}/problems/{slug}`, a page the engine serves
//! (`problem_types`), or `about:blank` when the status says it all. `ApiError` cannot know the
//! public URL, so it answers with the type relative (`/problems/{slug}`) and leaves the members
//! in the response's extensions; `problem_types::absolute_types`, the outermost layer, writes
//! the body again with the absolute URI.

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use commerce_domain::values::{FieldViolation, Violations};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::problem_types;

/// The body of every error response (`application/problem+json`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// An absolute URI naming the kind of problem: a short page the engine serves
    /// (`GET /problems/{slug}`) that says what it means and what to do, or `about:blank` when
    /// the status says it all.
    #[serde(rename = "type")]
    pub kind: String,
    /// The same for every problem of a type: the HTTP status's reason phrase.
    pub title: String,
    pub status: u16,
    /// What went wrong with this request, for a human.
    pub detail: String,
    /// Validation problems only: every invalid field or parameter of the request at once, each
    /// with where it is and what is wrong with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// One invalid field of a request body, or one invalid query or path parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Where the value is: `body`, `query` or `path`.
    #[serde(rename = "in")]
    pub location: Location,
    /// An RFC 6901 JSON pointer: into the body (`/price/amount`, `/variants/0/sku`; `""` for the
    /// body as a whole), or naming the parameter (`/limit`, `/sku`).
    #[schema(example = "/price/amount")]
    pub pointer: String,
    /// What is wrong, for a human.
    #[schema(example = "price.amount must be an integer number of minor units")]
    pub detail: String,
}

/// The part of a request a `FieldError` points into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Location {
    Body,
    Query,
    Path,
}

impl FieldError {
    /// A field of the body, at the JSON pointer `pointer`.
    pub fn body(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            location: Location::Body,
            pointer: pointer.into(),
            detail: detail.into(),
        }
    }

    /// A query parameter.
    pub fn query(name: &str, detail: impl Into<String>) -> Self {
        Self {
            location: Location::Query,
            pointer: pointer_of(&[name]),
            detail: detail.into(),
        }
    }

    /// A path parameter.
    pub fn path(name: &str, detail: impl Into<String>) -> Self {
        Self {
            location: Location::Path,
            pointer: pointer_of(&[name]),
            detail: detail.into(),
        }
    }
}

impl From<FieldViolation> for FieldError {
    /// A domain rule a field of the body breaks, at the field's pointer, in the rule's words.
    fn from(violation: FieldViolation) -> Self {
        Self::body(pointer_of(&violation.path), violation.message)
    }
}

/// Every invalid field and parameter of a request, gathered so that all of them are answered at
/// once: a handler checks each part of the request in turn, then answers with `finish`.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn push(&mut self, error: FieldError) {
        self.0.push(error);
    }

    /// The value of a check, or `None` with the fields it names kept for the answer. A failure
    /// that names no field (a 404, a 500) is no validation problem: it is returned as it is.
    pub fn check<T>(&mut self, result: Result<T, ApiError>) -> Result<Option<T>, ApiError> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(error) if !error.errors.is_empty() => {
                self.0.extend(error.errors);
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok` when nothing was gathered; else 422 when a field of the body is among them, 400
    /// when only parameters are.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else if self.0.iter().any(|e| e.location == Location::Body) {
            Err(ApiError::invalid_fields(self.0))
        } else {
            Err(ApiError::invalid_parameters(self.0))
        }
    }
}

/// The RFC 6901 pointer of a path of keys and indexes: `~` and `/` escaped.
pub fn pointer_of<S: AsRef<str>>(segments: &[S]) -> String {
    segments
        .iter()
        .map(|s| format!("/{}", s.as_ref().replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// An error on its way to becoming a problem+json response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    slug: &'static str,
    detail: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// RFC 9457 extension members, added beside the standard ones.
    extensions: Vec<(&'static str, serde_json::Value)>,
    errors: Vec<FieldError>,
}

impl ApiError {
    pub fn new(status: StatusCode, slug: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            slug,
            detail: detail.into(),
            headers: Vec::new(),
            extensions: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// 422: fields of the body that do not fit, all of them; `detail` sums them up.
    pub fn invalid_fields(errors: Vec<FieldError>) -> Self {
        Self::with_errors(StatusCode::UNPROCESSABLE_ENTITY, "validation", errors)
    }

    /// 422: one field of the body, at the JSON pointer `pointer`.
    pub fn invalid_field(pointer: &str, detail: impl Into<String>) -> Self {
        Self::invalid_fields(vec![FieldError::body(pointer, detail)])
    }

    /// 422: every field of the body that breaks a domain rule.
    pub fn violations(violations: Violations) -> Self {
        Self::invalid_fields(violations.into_iter().map(FieldError::from).collect())
    }

    /// This problem, when it is a 422 that names no field, pointing at the field of the body it
    /// can only be about (`/quantity` of a restock): a rule the aggregate applies against its
    /// state, which the request could not be checked against beforehand.
    pub fn at_field(mut self, pointer: &str) -> Self {
        if self.status == StatusCode::UNPROCESSABLE_ENTITY && self.errors.is_empty() {
            self.errors
                .push(FieldError::body(pointer, self.detail.clone()));
        }
        self
    }

    /// 422: one field or parameter that breaks a rule (a path parameter a command refused).
    pub fn with_field(error: FieldError) -> Self {
        Self::with_errors(StatusCode::UNPROCESSABLE_ENTITY, "validation", vec![error])
    }

    /// 400: query or path parameters that do not fit, all of them.
    pub fn invalid_parameters(errors: Vec<FieldError>) -> Self {
        Self::with_errors(StatusCode::BAD_REQUEST, "invalid-parameter", errors)
    }

    fn with_errors(status: StatusCode, slug: &'static str, errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => one.detail.clone(),
            many => format!(
                "{} values are invalid: {}",
                many.len(),
                many.iter()
                    .map(|e| e.detail.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        };
        Self {
            errors,
            ..Self::new(status, slug, detail)
        }
    }

    /// The invalid fields and parameters, when this is a validation problem.
    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// Adds an extension member (RFC 9457 §3.2): a field a client can act on without parsing
    /// `detail`, such as the id of the rebuild that is already running. The standard members
    /// keep their values: an extension of the same name is ignored.
    pub fn with_extension(mut self, name: &'static str, value: impl Serialize) -> Self {
        if let Ok(value) = serde_json::to_value(value) {
            self.extensions.push((name, value));
        }
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: impl ToString) -> Self {
        if let Ok(value) = HeaderValue::from_str(&value.to_string()) {
            self.headers.push((name, value));
        }
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    /// Well-formed input that breaks a rule (wrong type, out of range, empty cart…).
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
            .with_header(header::WWW_AUTHENTICATE, "Bearer")
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", detail)
    }

    /// `If-Match` named a version that is not the current one.
    pub fn precondition_failed(current: i64) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "stale-version",
            format!("the resource is at version {current}; re-read it and retry"),
        )
        .with_header(header::ETAG, format!("\"{current}\""))
    }

    pub fn payload_too_large(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", detail)
    }

    /// An unexpected failure: the cause is logged, never shown to the client.
    pub fn internal(error: anyhow::Error) -> Self {
        tracing::error!(error = format!("{error:#}"), "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on our side; it has been logged",
        )
    }

    /// Too many requests (rate limit, sign-in throttle): try again after that many seconds.
    pub fn too_many_requests(detail: impl Into<String>, retry_after_seconds: u64) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "too-many-requests", detail)
            .with_header(header::RETRY_AFTER, retry_after_seconds.max(1))
    }

    pub fn unavailable(detail: impl Into<String>, retry_after_seconds: u64) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
            .with_header(header::RETRY_AFTER, retry_after_seconds)
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        Self::internal(error)
    }
}

/// A problem's members and its slug, kept in the response's extensions until
/// `problem_types::absolute_types` makes the type absolute.
#[derive(Debug, Clone)]
pub(crate) struct PendingProblem {
    pub(crate) slug: &'static str,
    pub(crate) members: Map<String, Value>,
}

impl PendingProblem {
    /// The response body, with `type` the page of the slug under `base` (`""`: relative), or
    /// `about:blank` for a slug without a page.
    pub(crate) fn body(&self, base: &str) -> Body {
        let mut members = self.members.clone();
        members.insert("type".into(), problem_types::uri(base, self.slug).into());
        Body::from(serde_json::to_vec(&members).unwrap_or_default())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error").to_owned();
        let body = Problem {
            kind: String::new(),
            title,
            status: self.status.as_u16(),
            detail: self.detail,
            errors: self.errors,
        };
        let mut members = match serde_json::to_value(&body) {
            Ok(Value::Object(members)) => members,
            _ => Map::new(),
        };
        for (name, value) in self.extensions {
            members.entry(name).or_insert(value);
        }
        let pending = PendingProblem {
            slug: self.slug,
            members,
        };
        let mut response = (self.status, pending.body("")).into_response();
        response.extensions_mut().insert(pending);
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}

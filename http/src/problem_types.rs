//! The kinds of problem the API answers with, each served as a short page at
//! `GET /problems/{slug}`: the page a problem's `type` URI leads to.
//!
//! A problem's `type` is absolute, `{public URL}/problems/{slug}`, where the public URL is
//! `COMMERCE_PUBLIC_URL` (by default the address the engine listens on). Kinds with nothing to
//! say beyond their status (404, 500) have the type `about:blank` (RFC 9457 §4.2.1).

use axum::extract::{Path, Request};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::problem::PendingProblem;
use crate::ApiError;

/// A kind of problem with a page of its own.
pub struct ProblemType {
    pub slug: &'static str,
    pub status: u16,
    pub title: &'static str,
    /// What it means and what to do, in a sentence or three.
    pub text: &'static str,
}

/// Every kind of problem that has a page. A slug not listed here is `about:blank`.
pub const TYPES: &[ProblemType] = &[
    ProblemType {
        slug: "validation",
        status: 422,
        title: "Invalid input",
        text: "The body is well-formed JSON but some of its fields do not fit: a wrong type, a \
               value out of range, a missing or unknown field, or a business rule (an empty cart \
               at checkout, a review without a delivered order). The member <code>errors</code> \
               lists every invalid field at once, each with <code>pointer</code> (an RFC 6901 \
               JSON pointer into the body, such as <code>/price/amount</code>) and \
               <code>detail</code>. Fix them all and send the request again.",
    },
    ProblemType {
        slug: "invalid-parameter",
        status: 400,
        title: "Invalid parameter",
        text: "A query parameter (<code>?limit=</code>, <code>?sort=</code>…) or a path segment \
               (an id, a SKU) does not fit. The member <code>errors</code> names each one: \
               <code>in</code> is <code>query</code> or <code>path</code>, <code>pointer</code> \
               is <code>/</code> and the parameter's name, <code>detail</code> says what is \
               expected.",
    },
    ProblemType {
        slug: "bad-request",
        status: 400,
        title: "Bad request",
        text: "The request could not be read: the body is not JSON, or a cursor was not one \
               this API issued. <code>detail</code> says which; do not retry it unchanged.",
    },
    ProblemType {
        slug: "unsupported-media-type",
        status: 415,
        title: "Unsupported media type",
        text: "Send JSON bodies with <code>Content-Type: application/json</code> (bulk import \
               takes <code>application/x-ndjson</code>).",
    },
    ProblemType {
        slug: "payload-too-large",
        status: 413,
        title: "Payload too large",
        text: "The body is larger than the limit (1 MiB), or the event it would record is \
               larger than the event bus carries. Send less: fewer variants, shorter texts.",
    },
    ProblemType {
        slug: "unauthorized",
        status: 401,
        title: "Sign in",
        text: "The route needs <code>Authorization: Bearer &lt;token&gt;</code>. Get a token from \
               <code>POST /v1/auth/token</code>; sign in again when it has expired or been \
               revoked (a password change revokes every token of the account).",
    },
    ProblemType {
        slug: "forbidden",
        status: 403,
        title: "Not for you",
        text: "You are signed in, but the route is for another role (buyer, seller or admin), or \
               the thing belongs to someone else (another seller's SKU). <code>detail</code> \
               says who the route is for.",
    },
    ProblemType {
        slug: "conflict",
        status: 409,
        title: "Conflict",
        text: "The request clashes with the current state: an e-mail already registered, a \
               review already written, a rebuild already running, or writers that kept racing \
               on one resource. Read the resource again and decide.",
    },
    ProblemType {
        slug: "stale-version",
        status: 412,
        title: "Stale version",
        text: "<code>If-Match</code> named a version that is no longer current. The response's \
               <code>ETag</code> is the current version: read the resource again, check your \
               change still makes sense, and retry with that <code>If-Match</code>.",
    },
    ProblemType {
        slug: "too-many-requests",
        status: 429,
        title: "Too many requests",
        text: "You are sending requests faster than your limit, or signing in has failed too \
               often. Wait the seconds of <code>Retry-After</code>.",
    },
    ProblemType {
        slug: "unavailable",
        status: 503,
        title: "Try again later",
        text: "The engine cannot answer now: a read model has not yet caught up with \
               <code>X-Min-Position</code>, or a dependency is down. Retry after the seconds of \
               <code>Retry-After</code>.",
    },
];

/// The kind of problem `slug` names, when it has a page.
pub fn find(slug: &str) -> Option<&'static ProblemType> {
    TYPES.iter().find(|t| t.slug == slug)
}

/// The `type` URI of `slug`: its page under `base` (no trailing slash; `""` gives a relative
/// reference), or `about:blank`.
pub fn uri(base: &str, slug: &str) -> String {
    match find(slug) {
        Some(_) => format!("{base}/problems/{slug}"),
        None => "about:blank".to_owned(),
    }
}

/// `GET /problems` (the list) and `GET /problems/{slug}` (one kind), as short HTML pages.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/problems", get(index))
        .route("/problems/{slug}", get(page))
}

async fn index() -> Html<String> {
    let items: String = TYPES
        .iter()
        .map(|t| {
            format!(
                "<li><a href=\"/problems/{0}\"><code>{0}</code></a> ({1}): {2}</li>\n",
                t.slug, t.status, t.title
            )
        })
        .collect();
    Html(document(
        "Problem types",
        &format!(
            "<p>Every error is <code>application/problem+json</code> (RFC 9457). Its \
             <code>type</code> is one of these pages, or <code>about:blank</code> when the \
             status says it all (404, 500).</p>\n<ul>\n{items}</ul>"
        ),
    ))
}

async fn page(Path(slug): Path<String>) -> Response {
    match find(&slug) {
        Some(t) => Html(document(
            t.title,
            &format!(
                "<p>Status {}. {}</p>\n<p><a href=\"/problems\">All problem types</a></p>",
                t.status, t.text
            ),
        ))
        .into_response(),
        None => ApiError::not_found("no such problem type; see /problems").into_response(),
    }
}

fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
         <body><h1>{title}</h1>\n{body}\n</body></html>\n"
    )
}

/// The public URL of an engine listening on `addr`, when none is configured: `http://` and the
/// address, with a wildcard address (`0.0.0.0`, `::`) read as loopback.
pub fn default_public_url(addr: std::net::SocketAddr) -> String {
    let ip = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => std::net::Ipv4Addr::LOCALHOST.into(),
        ip if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("http://{}", std::net::SocketAddr::new(ip, addr.port()))
}

/// Middleware making every problem's `type` absolute under `base` (the public URL, no trailing
/// slash). Use it as the outermost layer, so problems from any layer pass through it.
pub async fn absolute_types(
    axum::extract::State(base): axum::extract::State<std::sync::Arc<str>>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    if let Some(problem) = response.extensions_mut().remove::<PendingProblem>() {
        let (mut parts, _) = response.into_parts();
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response = Response::from_parts(parts, problem.body(base.trim_end_matches('/')));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slug_the_api_uses_has_a_page_or_is_about_blank() {
        assert_eq!(
            uri("http://shop.example", "validation"),
            "http://shop.example/problems/validation"
        );
        assert_eq!(uri("http://shop.example", "not-found"), "about:blank");
        assert_eq!(uri("http://shop.example", "internal"), "about:blank");
        let mut slugs: Vec<_> = TYPES.iter().map(|t| t.slug).collect();
        slugs.dedup();
        assert_eq!(slugs.len(), TYPES.len());
    }

    #[test]
    fn a_wildcard_bind_address_reads_as_loopback() {
        let url = |a: &str| default_public_url(a.parse().unwrap());
        assert_eq!(url("0.0.0.0:8080"), "http://127.0.0.1:8080");
        assert_eq!(url("[::]:8080"), "http://[::1]:8080");
        assert_eq!(url("10.0.0.5:80"), "http://10.0.0.5:80");
    }
}

//! The OpenAPI 3.1 document served at `/openapi.json`, and the Swagger UI at `/docs`, whose
//! assets are compiled into the binary (vendored by `utoipa-swagger-ui`): the page loads nothing
//! from another host and works offline.
//!
//! Each API crate describes its own routes (`#[utoipa::path]`, `ToSchema`, `IntoParams`). What
//! the shared layers do to every route of a kind is documented here, once, as they implement it
//! once: the command pipeline (`Idempotency-Key`, `If-Match`, `ETag`, `X-Event-Position`), the
//! query side's read-your-writes wait (`X-Min-Position`, 503 with `Retry-After`), the extractors
//! (400, 413, 415, 422), bearer authentication (401), the rate limiter (429 with `Retry-After`)
//! and problem+json for every error.

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use utoipa::OpenApi;
use utoipa_swagger_ui::{Config, SwaggerUi};

/// Where the document is served (a literal in `router`, as every route is).
pub const DOCUMENT_PATH: &str = "/openapi.json";
/// Where the Swagger UI is served (`/docs` redirects to `/docs/`).
pub const DOCS_PATH: &str = "/docs";

/// Commands that do not go through the command pipeline: no aggregate version, no event.
const OUTSIDE_PIPELINE: &[(&str, &str)] =
    &[("post", "/v1/auth/token"), ("post", "/v1/me/password")];
/// Commands that change several aggregates (no single `ETag`, no `If-Match`).
const MANY_AGGREGATES: &[(&str, &str)] = &[("post", "/v1/products/import")];

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The routes of the `/openapi.json` document and the `/docs` viewer.
pub fn router() -> Router {
    let document = document();
    let config = Config::from(DOCUMENT_PATH)
        // The validator badge would send the document to a public service: off.
        .validator_url("none")
        .try_it_out_enabled(true)
        .persist_authorization(true);
    Router::new()
        .route("/openapi.json", get(move || async move { Json(document) }))
        .merge(SwaggerUi::new(DOCS_PATH).config(config))
}

/// The whole engine's OpenAPI document.
pub fn document() -> Value {
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Commerce engine",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "An event-sourced commerce engine: commands change aggregates whose events are the \
                only truth; reads are served from projections. Errors are RFC 9457 \
                `application/problem+json`. A command's response carries `ETag` (the aggregate's \
                version, for `If-Match`) and `X-Event-Position` (for a later read's `X-Min-Position`). \
                Every `/v1` route is rate limited per caller (429 with `Retry-After`).",
        },
        "paths": {},
        "components": { "schemas": {} },
    });
    for (part, layer) in [
        (
            to_value(commerce_command_api::ApiDoc::openapi()),
            Layer::Commands,
        ),
        (
            to_value(commerce_query_api::ApiDoc::openapi()),
            Layer::Queries,
        ),
        (
            to_value(commerce_admin_api::ApiDoc::openapi()),
            Layer::Admin,
        ),
        (
            to_value(commerce_webhooks::ApiDoc::openapi()),
            Layer::Integrations,
        ),
        (operations(), Layer::Operations),
    ] {
        merge(&mut doc, conventions(part, layer));
    }
    let (webhooks, schemas) = commerce_webhooks::document::openapi();
    doc["webhooks"] = webhooks;
    for (name, schema) in schemas {
        doc["components"]["schemas"][name] = schema;
    }
    unique_operation_ids(&mut doc);
    doc["components"]["securitySchemes"] = json!({
        "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": "`access_token` of `POST /v1/auth/token`" },
    });
    doc["components"]["parameters"] = shared_parameters();
    doc["components"]["headers"] = shared_headers();
    doc
}

fn to_value(doc: utoipa::openapi::OpenApi) -> Value {
    serde_json::to_value(doc).unwrap_or_default()
}

/// Where a part of the document comes from, and so what its routes share.
#[derive(Clone, Copy, PartialEq)]
enum Layer {
    Commands,
    Queries,
    Admin,
    /// The webhook routes: commands outside the pipeline (no event of an aggregate).
    Integrations,
    Operations,
}

/// Adds `part`'s paths (method by method) and component schemas to `doc`.
fn merge(doc: &mut Value, part: Value) {
    if let Some(paths) = part.get("paths").and_then(Value::as_object) {
        for (path, item) in paths {
            let target = doc["paths"]
                .as_object_mut()
                .map(|p| p.entry(path.clone()).or_insert_with(|| json!({})));
            if let (Some(target), Some(item)) = (target, item.as_object()) {
                for (key, value) in item {
                    target[key] = value.clone();
                }
            }
        }
    }
    if let Some(schemas) = part
        .pointer("/components/schemas")
        .and_then(Value::as_object)
    {
        for (name, schema) in schemas {
            doc["components"]["schemas"][name] = schema.clone();
        }
    }
}

/// The operations of `doc`, as (method, path, operation).
fn operations_of(doc: &mut Value) -> Vec<(String, String, &mut Value)> {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return Vec::new();
    };
    paths
        .iter_mut()
        .flat_map(|(path, item)| {
            let path = path.clone();
            item.as_object_mut()
                .into_iter()
                .flat_map(|item| item.iter_mut())
                .filter(|(method, _)| METHODS.contains(&method.as_str()))
                .map(move |(method, op)| (method.clone(), path.clone(), op))
        })
        .collect()
}

fn conventions(mut doc: Value, layer: Layer) -> Value {
    for (method, path, op) in operations_of(&mut doc) {
        let api = path.starts_with("/v1/");
        let command = layer != Layer::Operations && method != "get";
        let key = (method.as_str(), path.as_str());
        let pipeline = command && layer == Layer::Commands && !OUTSIDE_PIPELINE.contains(&key);
        let one_aggregate = pipeline && !MANY_AGGREGATES.contains(&key);

        let mut params = take_parameters(op);
        let conditional = params.iter().any(|p| p["name"] == "If-None-Match");
        // A command outside the pipeline that honours `Idempotency-Key` declares it.
        let idempotent = pipeline || params.iter().any(|p| p["name"] == "Idempotency-Key");
        params.retain(|p| {
            !matches!(
                p["name"].as_str(),
                Some("Idempotency-Key" | "If-Match" | "X-Min-Position" | "If-None-Match")
            )
        });
        for param in &mut params {
            refuse_null(param);
        }
        let has_input = !params.is_empty();
        if idempotent {
            params.push(json!({ "$ref": "#/components/parameters/IdempotencyKey" }));
        }
        if one_aggregate {
            params.push(json!({ "$ref": "#/components/parameters/IfMatch" }));
        }
        if layer == Layer::Queries {
            params.push(json!({ "$ref": "#/components/parameters/MinPosition" }));
        }
        if conditional {
            params.push(json!({ "$ref": "#/components/parameters/IfNoneMatch" }));
        }
        if !params.is_empty() {
            op["parameters"] = Value::Array(params.clone());
        }

        if layer == Layer::Admin && op.get("security").is_none() {
            op["security"] = json!([{ "bearer": [] }]);
        }
        let secured = op["security"]
            .as_array()
            .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
        let body = op
            .pointer("/requestBody/content")
            .and_then(Value::as_object)
            .map(|c| c.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        let json_body = body.iter().any(|c| c == "application/json");

        let responses = op["responses"].as_object_mut();
        let Some(responses) = responses else { continue };
        for (status, response) in responses.iter_mut() {
            if status.as_str() >= "400" {
                response["content"] = problem_content();
            } else if status.starts_with('2') && pipeline {
                let headers = &mut response["headers"];
                headers["X-Event-Position"] =
                    json!({ "$ref": "#/components/headers/EventPosition" });
                if one_aggregate {
                    headers["ETag"] = json!({ "$ref": "#/components/headers/ETag" });
                }
            } else if status.starts_with('2') && conditional {
                response["headers"]["ETag"] =
                    json!({ "$ref": "#/components/headers/ResourceETag" });
            }
        }
        if has_input || pipeline || layer == Layer::Queries || !body.is_empty() {
            add_error(responses, "400", "a malformed parameter, header or body");
        }
        if secured {
            add_error(
                responses,
                "401",
                "not signed in, or the token is invalid, expired or revoked",
            );
        }
        if layer == Layer::Admin {
            add_error(responses, "403", "not an admin");
        }
        if !body.is_empty() {
            add_error(responses, "413", "the body is larger than 1 MiB");
        }
        if json_body {
            add_error(
                responses,
                "415",
                "the body is not sent as `Content-Type: application/json`",
            );
            add_error(
                responses,
                "422",
                "the body does not fit the schema, or breaks a rule",
            );
        }
        if pipeline {
            add_error(
                responses,
                "409",
                "a concurrent change kept winning after bounded retries",
            );
            add_error(
                responses,
                "422",
                "this `Idempotency-Key` was used for a different request",
            );
        }
        if one_aggregate {
            add_error(responses, "412", "`If-Match` names a version that is no longer current (the problem's `current_version` is)");
        }
        if conditional {
            responses.entry("304").or_insert_with(
                || json!({ "description": "not modified: `If-None-Match` names the current ETag" }),
            );
        }
        if layer == Layer::Queries {
            add_error(
                responses,
                "503",
                "`X-Min-Position` was not reached in time; retry after `Retry-After`",
            );
            retry_after(responses, "503");
        }
        if api {
            add_error(responses, "429", "rate limited; retry after `Retry-After`");
            retry_after(responses, "429");
        }
        add_error(
            responses,
            "500",
            "an unexpected failure; its cause is logged, never sent",
        );
    }
    doc
}

/// Operation ids are handler names, unique per module only: a repeated one is qualified with
/// its tag, then with its path.
fn unique_operation_ids(doc: &mut Value) {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for (_, _, op) in operations_of(doc) {
        if let Some(id) = op["operationId"].as_str() {
            *seen.entry(id.to_owned()).or_default() += 1;
        }
    }
    let mut taken = std::collections::HashSet::new();
    for (method, path, op) in operations_of(doc) {
        let Some(id) = op["operationId"].as_str().map(str::to_owned) else {
            continue;
        };
        let tag = op
            .pointer("/tags/0")
            .and_then(Value::as_str)
            .unwrap_or("api");
        let mut unique = if seen.get(&id).copied().unwrap_or_default() > 1 {
            format!("{tag}_{id}")
        } else {
            id
        };
        if !taken.insert(unique.clone()) {
            unique = format!("{method}{}", path.replace(['/', '{', '}', '-', '.'], "_"));
            taken.insert(unique.clone());
        }
        op["operationId"] = Value::String(unique);
    }
}

/// Removes and returns the operation's parameters.
fn take_parameters(op: &mut Value) -> Vec<Value> {
    match op.get_mut("parameters").map(Value::take) {
        Some(Value::Array(params)) => params,
        _ => Vec::new(),
    }
}

/// A parameter's value is text on the wire: it is never `null`, and `Option<T>` only means that
/// it may be left out (`required: false`).
fn refuse_null(param: &mut Value) {
    let Some(schema) = param.get_mut("schema") else {
        return;
    };
    if let Some(types) = schema.get("type").and_then(Value::as_array) {
        let kept: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        schema["type"] = match kept.as_slice() {
            [one] => one.clone(),
            _ => Value::Array(kept),
        };
    }
    if let Some(alternatives) = schema.get("oneOf").and_then(Value::as_array) {
        let kept: Vec<Value> = alternatives
            .iter()
            .filter(|s| s.get("type") != Some(&json!("null")))
            .cloned()
            .collect();
        if let [one] = kept.as_slice() {
            let one = one.clone();
            if let Some(schema) = schema.as_object_mut() {
                schema.remove("oneOf");
                if let Some(fields) = one.as_object() {
                    for (k, v) in fields {
                        schema.insert(k.clone(), v.clone());
                    }
                }
            }
        }
    }
}

fn problem_content() -> Value {
    json!({ "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } })
}

/// Documents `status` as a problem; when the route documents it already, adds `why`.
fn add_error(responses: &mut Map<String, Value>, status: &str, why: &str) {
    let response = responses
        .entry(status.to_owned())
        .or_insert_with(|| json!({ "description": "" }));
    let description = response["description"].as_str().unwrap_or_default();
    if !description.contains(why) {
        response["description"] = Value::String(if description.is_empty() {
            capitalise(why)
        } else {
            format!("{description}; or {why}")
        });
    }
    response["content"] = problem_content();
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn retry_after(responses: &mut Map<String, Value>, status: &str) {
    if let Some(response) = responses.get_mut(status) {
        response["headers"]["Retry-After"] = json!({ "$ref": "#/components/headers/RetryAfter" });
    }
}

fn shared_parameters() -> Value {
    json!({
        "IdempotencyKey": {
            "name": "Idempotency-Key", "in": "header", "required": false,
            "description": "A retry with the same key and body returns the first response and appends \
                no event; the same key with another body is 422. 1 to 200 visible ASCII characters.",
            "schema": { "type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[!-~]+$" },
        },
        "IfMatch": {
            "name": "If-Match", "in": "header", "required": false,
            "description": "The `ETag` of the aggregate this command changes, as a response sent it \
                (`\"3\"`): a stale version is 412 with the current one.",
            "schema": { "type": "string", "pattern": "^(W/)?\"?[0-9]+\"?$" },
        },
        "MinPosition": {
            "name": "X-Min-Position", "in": "header", "required": false,
            "description": "Read your writes: wait (bounded) until the read model has applied this \
                global position (a command's `X-Event-Position`), else 503 with `Retry-After`.",
            "schema": { "type": "integer", "format": "int64", "minimum": 0 },
        },
        "IfNoneMatch": {
            "name": "If-None-Match", "in": "header", "required": false,
            "description": "An `ETag` of this resource: 304 while it is still current.",
            "schema": { "type": "string" },
        },
    })
}

fn shared_headers() -> Value {
    json!({
        "ETag": {
            "description": "The version of the aggregate the command changed, for `If-Match`.",
            "schema": { "type": "string", "pattern": "^\"[0-9]+\"$" },
        },
        "ResourceETag": {
            "description": "This representation's tag, for `If-None-Match`.",
            "schema": { "type": "string" },
        },
        "EventPosition": {
            "description": "The global position of the command's last event: send it as \
                `X-Min-Position` to read your write.",
            "schema": { "type": "integer", "format": "int64", "minimum": 0 },
        },
        "RetryAfter": {
            "description": "Seconds to wait before retrying.",
            "schema": { "type": "integer", "minimum": 0 },
        },
    })
}

/// Health, metrics, this document and its viewer.
fn operations() -> Value {
    let text = |description: &str, media: &str| json!({ "description": description, "content": { media: { "schema": { "type": "string" } } } });
    let up_or_down = json!({ "type": "string", "enum": ["up", "down"] });
    json!({ "paths": {
        "/health/live": { "get": {
            "tags": ["ops"], "operationId": "live", "summary": "Liveness: the process serves HTTP.",
            "responses": { "200": { "description": "live", "content": { "application/json": { "schema": {
                "type": "object", "required": ["status"],
                "properties": { "status": { "type": "string", "const": "live" } } } } } } },
        } },
        "/health/ready": { "get": {
            "tags": ["ops"], "operationId": "ready",
            "summary": "Readiness: Postgres and NATS are reachable.",
            "responses": {
                "200": { "description": "ready", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Readiness" } } } },
                "503": { "description": "a dependency is down", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Readiness" } } } },
            },
        } },
        "/metrics": { "get": {
            "tags": ["ops"], "operationId": "metrics", "summary": "Prometheus metrics (text exposition format).",
            "responses": { "200": text("the metrics", "text/plain") },
        } },
        "/openapi.json": { "get": {
            "tags": ["ops"], "operationId": "openapi", "summary": "This document.",
            "responses": { "200": { "description": "the OpenAPI 3.1 document",
                "content": { "application/json": { "schema": { "type": "object" } } } } },
        } },
        "/docs": { "get": {
            "tags": ["ops"], "operationId": "docs", "summary": "Redirects to the API viewer, `/docs/`.",
            "responses": { "303": { "description": "to `/docs/`",
                "headers": { "Location": { "schema": { "type": "string", "const": "/docs/" } } } } },
        } },
        "/docs/": { "get": {
            "tags": ["ops"], "operationId": "docsPage",
            "summary": "The API viewer (Swagger UI, served from the binary; it loads nothing from elsewhere).",
            "responses": { "200": text("the viewer's page", "text/html") },
        } },
        "/problems": { "get": {
            "tags": ["ops"], "operationId": "problemTypes",
            "summary": "Every problem `type` the engine answers with, each linked to its page.",
            "responses": { "200": text("the list", "text/html") },
        } },
        "/problems/{slug}": { "get": {
            "tags": ["ops"], "operationId": "problemType",
            "summary": "What a problem `type` means and what to do about it (problem `type` URIs lead here).",
            "parameters": [{ "name": "slug", "in": "path", "required": true, "schema": { "type": "string" } }],
            "responses": {
                "200": text("the page", "text/html"),
                "404": { "description": "no such problem type", "content": { "application/problem+json": {
                    "schema": { "$ref": "#/components/schemas/Problem" } } } },
            },
        } },
    },
    "components": { "schemas": { "Readiness": {
        "type": "object", "required": ["postgres", "nats"],
        "properties": { "postgres": up_or_down.clone(), "nats": up_or_down },
    } } } })
}

//! The API contract, checked against a running engine: the document served at `/openapi.json`
//! is valid OpenAPI 3.1 (openapi-spec-validator) and complete (every route of the router, every
//! error as problem+json, the shared headers); `/docs` loads nothing from another host; and
//! schemathesis, as an anonymous caller, a buyer and a seller, finds no server error and no
//! answer outside the document (status, content type, body schema).
//!
//! The Python tools are pinned in `scripts/api-tools.txt` and installed by
//! `scripts/api-tools.sh` into `.tools/venv` (ignored by git) the first time a test needs them.
//! `SCHEMATHESIS_MAX_TIME` (seconds per caller, default 40) and `SCHEMATHESIS_SEED` tune the run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/cleanup.rs"]
mod cleanup;
#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

mod docs;
mod document;
mod routes;
mod schemathesis;
mod tools;

//! The router against the document: every route the engine's source registers is documented,
//! and every documented operation is routed. Generic: a route added anywhere in the engine's
//! crates (`.route("/path", get(..).post(..))`, with a literal path) must be documented too.

use std::collections::BTreeSet;
use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::spawn_app;
use crate::tools::{operations, root, served_document};

/// Source folders that build other servers' routers: the sandbox payment gateway is a separate
/// HTTP service (its own port), not part of the engine's API.
const OTHER_SERVERS: &[&str] = &["sagas/src/gateway/"];
/// Folders that hold no engine code.
const NOT_ENGINE: &[&str] = &["target", "tests", "bench", ".tools", ".data", ".git"];

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if dir == root() && NOT_ENGINE.contains(&name.as_str()) {
                continue;
            }
            rust_files(&path, out);
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// The text from `start` (just after an opening parenthesis) to its closing one.
fn balanced(text: &str, start: usize) -> &str {
    let mut depth = 1;
    for (i, c) in text[start..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &text[start..start + i];
                }
            }
            _ => {}
        }
    }
    &text[start..]
}

/// `(method, path)` of every `.route(..)` in the engine's source.
fn routed() -> BTreeSet<(String, String)> {
    let mut files = Vec::new();
    rust_files(&root(), &mut files);
    let mut routes = BTreeSet::new();
    for file in files {
        let relative = file
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if OTHER_SERVERS.iter().any(|s| relative.starts_with(s)) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (at, _) in text.match_indices(".route(") {
            let call = balanced(&text, at + ".route(".len());
            let rest = call.trim_start();
            let path = rest
                .strip_prefix('"')
                .and_then(|r| r.split_once('"'))
                .map(|(path, _)| path)
                .unwrap_or_else(|| {
                    panic!("{relative}: a route's path must be a literal: .route({call})")
                });
            let handlers = &rest[path.len() + 2..];
            let mut found = false;
            for method in METHODS {
                let needle = format!("{method}(");
                for (i, _) in handlers.match_indices(&needle) {
                    let before = handlers[..i].chars().next_back();
                    if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'))
                        || handlers[..i].ends_with("routing::")
                    {
                        routes.insert((method.to_owned(), path.to_owned()));
                        found = true;
                    }
                }
            }
            assert!(found, "{relative}: no method in .route({call})");
        }
    }
    routes
}

#[tokio::test]
async fn every_route_of_the_router_is_documented() {
    let app = spawn_app().await;
    let doc = served_document(&app).await;
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let routed = routed();
    // The source scan finds the routers of all three APIs and of the operational routes.
    for expected in [
        ("post", "/v1/products"),
        ("get", "/v1/products"),
        ("get", "/v1/admin/projections"),
        ("get", "/health/ready"),
        ("get", "/metrics"),
        ("get", "/openapi.json"),
    ] {
        assert!(
            routed.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "the scan missed {expected:?}: {routed:?}"
        );
    }
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from /openapi.json: {undocumented:?}"
    );
}

/// A path with each `{parameter}` filled with a value no route refuses as a route.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "0190f3c4-0000-7000-8000-000000000000"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = spawn_app().await;
    let doc = served_document(&app).await;
    for (method, path, _) in operations(&doc) {
        // Anonymous, without a body: nothing is changed, every route answers before acting.
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let response = app
            .client
            .request(
                method.clone(),
                format!("{}{}", app.address, concrete(&path)),
            )
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        if status == StatusCode::NOT_FOUND {
            let body: Value = response.json().await.unwrap_or_default();
            assert_ne!(
                body["detail"], "no such route",
                "{method} {path} is documented but not routed"
            );
        }
    }
}

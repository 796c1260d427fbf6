//! The served document: valid OpenAPI 3.1, and complete where clients depend on it.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

use crate::helpers::spawn_app;
use crate::tools::{operations, scratch, served_document, venv_bin};

#[tokio::test]
async fn the_served_document_is_valid_openapi_3_1() {
    let app = spawn_app().await;
    let doc = served_document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let file = scratch("contract").join(format!("openapi-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let bin = venv_bin();
    let output = tokio::task::spawn_blocking(move || {
        let output = Command::new(bin.join("openapi-spec-validator"))
            .arg(&file)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&file);
        output
    })
    .await
    .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // The validator quotes the whole document after its finding: the finding is enough.
    let report: String = report.chars().take(1_500).collect();
    assert!(output.status.success(), "openapi-spec-validator:\n{report}");
}

/// Every `$ref` of `value`.
fn refs(value: &Value, found: &mut BTreeSet<String>) {
    match value {
        Value::Object(fields) => {
            if let Some(Value::String(target)) = fields.get("$ref") {
                found.insert(target.clone());
            }
            fields.values().for_each(|v| refs(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
        _ => {}
    }
}

/// A parameter, its `$ref` resolved.
fn resolve<'a>(doc: &'a Value, param: &'a Value) -> &'a Value {
    match param["$ref"].as_str() {
        Some(target) => doc
            .pointer(target.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("{target} resolves to nothing")),
        None => param,
    }
}

#[tokio::test]
async fn every_reference_resolves_and_every_parameter_is_where_the_engine_reads_it() {
    let app = spawn_app().await;
    let doc = served_document(&app).await;
    let mut found = BTreeSet::new();
    refs(&doc, &mut found);
    for target in &found {
        assert!(
            target.starts_with("#/") && doc.pointer(&target[1..]).is_some(),
            "dangling $ref {target}"
        );
    }
    for (method, path, op) in operations(&doc) {
        let template: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let mut declared = BTreeSet::new();
        for param in op["parameters"].as_array().into_iter().flatten() {
            let param = resolve(&doc, param);
            let name = param["name"].as_str().unwrap();
            if param["in"] == "path" {
                assert!(
                    template.contains(name),
                    "{method} {path}: `{name}` is declared in the path but is not in it"
                );
                declared.insert(name);
            }
            // On the wire a parameter is text: it may be left out, never `null`.
            let kind = &param["schema"]["type"];
            assert!(
                !kind.as_array().is_some_and(|t| t.contains(&"null".into()))
                    && param["schema"]["oneOf"].is_null(),
                "{method} {path}: `{name}` is typed as nullable: {param}"
            );
        }
        assert_eq!(
            declared, template,
            "{method} {path}: path parameters undeclared"
        );
    }
}

fn has_param(doc: &Value, op: &Value, name: &str) -> bool {
    op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| resolve(doc, p)["name"] == name)
}

#[tokio::test]
async fn every_answer_is_documented_with_its_schema_headers_and_problems() {
    let app = spawn_app().await;
    let doc = served_document(&app).await;
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    for (method, path, op) in operations(&doc) {
        let api = path.starts_with("/v1/");
        let responses = op["responses"].as_object().unwrap();
        let secured = op["security"]
            .as_array()
            .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
        for (status, response) in responses {
            let content = response["content"].as_object();
            if status.as_str() >= "400" {
                let content = content.unwrap_or_else(|| panic!("{method} {path} {status}"));
                assert_eq!(
                    content.keys().collect::<Vec<_>>(),
                    ["application/problem+json"],
                    "{method} {path} {status}"
                );
                assert_eq!(
                    content["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem"
                );
            } else if status.starts_with('2') && status != "204" {
                let schema = content
                    .and_then(|c| c.values().next())
                    .map(|media| &media["schema"]);
                assert!(
                    schema.is_some_and(|s| s.is_object()),
                    "{method} {path} {status}: no schema for the body"
                );
            }
        }
        if !api {
            continue;
        }
        for status in ["429", "500"] {
            assert!(
                responses.contains_key(status),
                "{method} {path}: no {status}"
            );
        }
        assert!(
            responses["429"]["headers"]["Retry-After"].is_object(),
            "{method} {path}: 429 without Retry-After"
        );
        if secured {
            assert!(responses.contains_key("401"), "{method} {path}: no 401");
        }
        if path.starts_with("/v1/admin/") {
            assert!(secured, "{method} {path}: an admin route without security");
            assert!(responses.contains_key("403"), "{method} {path}: no 403");
        }
        if op.get("requestBody").is_some() {
            assert!(responses.contains_key("413"), "{method} {path}: no 413");
        }
        // Webhook subscriptions are the integration's configuration, not an aggregate's
        // events: no event position to wait for, no aggregate version to match.
        let integration = path.starts_with("/v1/webhooks");
        let command = (method != "get" && !path.starts_with("/v1/admin/") && !integration)
            || path == "/v1/admin/accounts/{id}/forget";
        let outside = ["/v1/auth/token", "/v1/me/password"].contains(&path.as_str());
        if command && !outside {
            assert!(has_param(&doc, &op, "Idempotency-Key"), "{method} {path}");
            let success = responses
                .iter()
                .find(|(s, _)| s.starts_with('2'))
                .unwrap()
                .1;
            assert!(
                success["headers"]["X-Event-Position"].is_object(),
                "{method} {path}: no X-Event-Position"
            );
            if path != "/v1/products/import" {
                assert!(has_param(&doc, &op, "If-Match"), "{method} {path}");
                assert!(success["headers"]["ETag"].is_object(), "{method} {path}");
                assert!(responses.contains_key("412"), "{method} {path}: no 412");
            }
        }
        if method == "get" && !path.starts_with("/v1/admin/") && !integration {
            assert!(has_param(&doc, &op, "X-Min-Position"), "{method} {path}");
            assert!(
                responses["503"]["headers"]["Retry-After"].is_object(),
                "{method} {path}: 503 without Retry-After"
            );
        }
    }

    // The bodies that are not JSON, and the search facets.
    let import = &doc["paths"]["/v1/products/import"]["post"]["requestBody"]["content"];
    assert!(
        import["application/x-ndjson"]["schema"].is_object(),
        "{import}"
    );
    let search = &doc["paths"]["/v1/products"]["get"];
    let attr = search["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "attr")
        .expect("the attr.<name> filters are documented");
    assert_eq!(attr["in"], "query");
    assert_eq!(attr["explode"], true);
    assert!(
        attr["schema"]["propertyNames"]["pattern"]
            .as_str()
            .unwrap()
            .starts_with(r"^attr\."),
        "{attr}"
    );
    for (path, media) in [
        ("/metrics", "text/plain"),
        ("/health/ready", "application/json"),
    ] {
        assert!(doc["paths"][path]["get"]["responses"]["200"]["content"][media].is_object());
    }
}

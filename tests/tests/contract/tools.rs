//! The workspace's paths and the pinned Python tools.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use serde_json::Value;

use crate::helpers::TestApp;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the workspace")
        .to_path_buf()
}

/// The bin folder of `.tools/venv`, installed by `scripts/api-tools.sh` when missing or when
/// the pins changed (once per test process).
pub fn venv_bin() -> PathBuf {
    static INSTALLED: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(bin) = installed.as_ref() {
        return bin.clone();
    }
    let output = Command::new(root().join("scripts/api-tools.sh"))
        .output()
        .expect("scripts/api-tools.sh runs");
    assert!(
        output.status.success(),
        "scripts/api-tools.sh failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bin = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    *installed = Some(bin.clone());
    bin
}

/// A scratch folder under `.tools` (ignored by git).
pub fn scratch(name: &str) -> PathBuf {
    let dir = root().join(".tools").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The document the engine serves.
pub async fn served_document(app: &TestApp) -> Value {
    let response = app
        .request(reqwest::Method::GET, "/openapi.json", None, None)
        .await;
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    response.json().await.unwrap()
}

/// Every operation of `doc`, as (method, path, operation).
pub fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut all = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if [
                "get", "put", "post", "delete", "patch", "head", "options", "trace",
            ]
            .contains(&method.as_str())
            {
                all.push((method.clone(), path.clone(), op.clone()));
            }
        }
    }
    all
}

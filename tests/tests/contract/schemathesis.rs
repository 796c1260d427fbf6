//! Schemathesis against a test engine, as an anonymous caller, a buyer and a seller: no server
//! error, and every answer's status, content type and body as the document says.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::helpers::spawn_app_with;
use crate::tools::{root, scratch, venv_bin};

const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failure_as_anonymous_buyer_and_seller() {
    let app = spawn_app_with(|config| {
        // A read waiting for a position nobody wrote answers 503 after this long, not 5 s.
        config.min_position_wait = Duration::from_millis(200);
    })
    .await;
    let (_, buyer) = app.account("buyer").await;
    let (_, seller) = app.account("seller").await;
    // Something to find: a product with stock, in a cart.
    app.product(&seller, "CONTRACT-MUG", 1200, 50).await;
    app.add_to_cart(&buyer, "CONTRACT-MUG", 1).await;

    let bin = venv_bin();
    let max_time = env_or("SCHEMATHESIS_MAX_TIME", "40");
    let seed = env_or("SCHEMATHESIS_SEED", "20260113");
    let work = scratch("schemathesis");
    let mut failures = Vec::new();
    // Forgetting oneself and changing one's password end the caller's tokens: those two run
    // last for each caller, after everything else it can reach.
    let ending = ["forget_me", "change_password"];
    let mut runs = vec![("anonymous", None, None)];
    for (who, token) in [("buyer", &buyer), ("seller", &seller)] {
        runs.push((who, Some(token), Some(false)));
        runs.push((who, Some(token), Some(true)));
    }
    for (who, token, ending_only) in runs {
        let mut command = Command::new(bin.join("schemathesis"));
        command
            .current_dir(&work)
            .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
            .env("PYTHONPATH", root().join("scripts"))
            .env("NO_COLOR", "1")
            .arg("--config-file")
            .arg(root().join("scripts/schemathesis.toml"))
            .arg("run")
            .arg(format!("{}/openapi.json", app.address))
            .args(["--checks", CHECKS, "--seed", &seed])
            .args(["--max-examples", "25", "--request-timeout", "10"])
            .args(["--exclude-path-regex", "^/docs"]);
        for id in ending {
            match ending_only {
                Some(true) => command.args(["--include-operation-id", id]),
                Some(false) => command.args(["--exclude-operation-id", id]),
                None => &mut command,
            };
        }
        if let Some(token) = token {
            command.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        let max_time = if ending_only == Some(true) {
            "10"
        } else {
            max_time.as_str()
        };
        command.args(["--max-time", max_time]);
        let started = Instant::now();
        let output = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        eprintln!(
            "schemathesis as {who}: {} in {:.0?}\n{}",
            output.status,
            started.elapsed(),
            text.lines()
                .rev()
                .take(25)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        );
        if !output.status.success() {
            failures.push(format!(
                "as {who}:\n{text}\n{}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

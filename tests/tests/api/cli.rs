//! The operator CLI: the built `commerce` binary run as an operator would, against an engine of
//! the test's own. Needs `cargo build --bin commerce` first (`make test` does it), or
//! `COMMERCE_BIN`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{spawn_app, TestApp, ADMIN_EMAIL, ADMIN_PASSWORD, PASSWORD};

/// The `commerce` binary: `COMMERCE_BIN`, else the one cargo built next to this test's `deps/`.
fn commerce_binary() -> PathBuf {
    if let Ok(path) = std::env::var("COMMERCE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test knows its own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in <target>/<profile>/deps");
    let binary = profile_dir.join(format!("commerce{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build --bin commerce` first (`make test` builds it), \
         or set COMMERCE_BIN",
        binary.display()
    );
    binary
}

/// What one run of the CLI printed, and how it exited.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Asserts exit 0 and parses stdout as one JSON document.
    pub fn json(&self) -> Value {
        assert_eq!(self.code, 0, "{self:?}");
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "{self:?}");
        &self.stdout
    }

    /// Asserts the exit code and a one-line message on stderr.
    pub fn fails(&self, code: i32) -> &str {
        assert_eq!(self.code, code, "{self:?}");
        assert_eq!(self.stderr.trim().lines().count(), 1, "{self:?}");
        self.stderr.trim()
    }
}

/// `commerce args…` with only the variables given (none of the caller's COMMERCE_*), and
/// `stdin` on its standard input. Runs off the async threads: the engine under test shares them.
pub async fn commerce(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Run {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let stdin = stdin.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new(commerce_binary());
        command
            .args(&args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("the commerce binary starts");
        let mut input = child.stdin.take().expect("a piped stdin");
        input
            .write_all(stdin.as_bytes())
            .expect("stdin takes the input");
        drop(input);
        Run::from(child.wait_with_output().expect("the commerce binary ends"))
    })
    .await
    .expect("the CLI task")
}

/// A URL nobody listens on.
fn nowhere() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn an_unreachable_engine_is_exit_3_and_named() {
    let url = nowhere();
    let run = commerce(
        &["projections", "list", "--url", &url, "--token", "t"],
        &[],
        "",
    )
    .await;
    let message = run.fails(3);
    assert!(message.contains(&url), "{message}");
}

#[tokio::test]
async fn refused_credentials_are_exit_4_and_never_printed() {
    let app = spawn_app().await;
    let secret = "not-the-password-at-all";
    let run = commerce(
        &[
            "projections",
            "list",
            "--email",
            ADMIN_EMAIL,
            "--password",
            secret,
        ],
        &[("COMMERCE_URL", &app.address)],
        "",
    )
    .await;
    let message = run.fails(4);
    assert!(message.contains(ADMIN_EMAIL), "{message}");
    assert!(!run.stderr.contains(secret) && !run.stdout.contains(secret));
}

#[tokio::test]
async fn no_credentials_is_a_usage_error() {
    let app = spawn_app().await;
    let run = commerce(&["sagas", "list"], &[("COMMERCE_URL", &app.address)], "").await;
    assert!(run.fails(2).contains("--token"));
}

#[tokio::test]
async fn a_bad_as_of_is_refused_before_any_request() {
    let run = commerce(
        &[
            "streams",
            "show",
            "order",
            "x",
            "--as-of",
            "yesterday",
            "--url",
            &nowhere(),
            "--token",
            "t",
        ],
        &[],
        "",
    )
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("RFC 3339"), "{run:?}");
}

#[tokio::test]
async fn admin_create_makes_an_admin_who_can_sign_in_and_is_idempotent() {
    let app = spawn_app().await;
    let email = format!("ops-{}@example.com", Uuid::new_v4().simple());
    let password = "a long enough password";
    let database = [("DATABASE_URL", app.database_url.as_str())];

    let created = commerce(
        &["admin", "create", "--email", &email, "--name", "Ops"],
        &database,
        &format!("{password}\n"),
    )
    .await;
    assert!(created.ok().contains("created admin"), "{created:?}");
    assert!(!created.stdout.contains(password) && !created.stderr.contains(password));
    let token = app.token(&email, password).await;

    // The token the engine issued carries the admin role.
    let claims = token.split('.').nth(1).expect("a JWT has a payload");
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    assert_eq!(claims["role"], "admin", "{claims}");

    let again = commerce(
        &["admin", "create", "--email", &email],
        &[database[0], ("COMMERCE_ADMIN_PASSWORD", password)],
        "",
    )
    .await;
    assert!(again.ok().contains("already exists"), "{again:?}");
}

#[tokio::test]
async fn admin_create_refuses_a_weak_password_and_a_buyers_email() {
    let app = spawn_app().await;
    let database = [("DATABASE_URL", app.database_url.as_str())];
    let weak = commerce(
        &[
            "admin",
            "create",
            "--email",
            "weak@example.com",
            "--password",
            "short",
        ],
        &database,
        "",
    )
    .await;
    assert!(weak.fails(2).contains("8 to 128 characters"), "{weak:?}");

    let buyer = format!("buyer-{}@example.com", Uuid::new_v4().simple());
    let response = app
        .post(
            "/v1/accounts",
            None,
            serde_json::json!({"email": buyer, "password": PASSWORD, "name": "B", "role": "buyer"}),
        )
        .await;
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    let taken = commerce(
        &["admin", "create", "--email", &buyer],
        &database,
        "a long enough password\n",
    )
    .await;
    assert!(taken.fails(6).contains("not an admin"), "{taken:?}");
}

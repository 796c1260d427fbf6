//! The operator CLI: the built `commerce` binary run as an operator would, against an engine of
//! the test's own. Needs `cargo build --bin commerce` first (`make test` does it), or
//! `COMMERCE_BIN`.
//!
//! - `connection`: unreachable engines, refused or missing credentials, usage errors.
//! - `admin`: `admin create` on the database.
//! - `reads`: projections, rebuilds and streams.
//! - `events`: `events tail` and `events republish`.
//! - `repairs`: dead letters and sagas.
//! - `webhooks`: the delivery log, redelivery and replay.

mod admin;
mod connection;
mod events;
mod reads;
mod repairs;
mod webhooks;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::binary::commerce_binary;
use crate::helpers::{TestApp, ADMIN_EMAIL, ADMIN_PASSWORD};

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

/// `commerce args…` against `app`, signed in as its admin through the environment.
pub async fn operator(app: &TestApp, args: &[&str]) -> Run {
    commerce(
        args,
        &[
            ("COMMERCE_URL", &app.address),
            ("COMMERCE_ADMIN_EMAIL", ADMIN_EMAIL),
            ("COMMERCE_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ],
        "",
    )
    .await
}

/// A URL nobody listens on.
pub fn nowhere() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// A long-running `commerce` (`events tail`): its stdout lines as they come.
pub struct Live {
    /// Taken when the test ends it; else killed on drop.
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Live {
    /// Starts `commerce args…` against `app`, signed in as its admin.
    pub fn start(app: &TestApp, args: &[&str]) -> Self {
        let mut child = Command::new(commerce_binary())
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("COMMERCE_URL", &app.address)
            .env("COMMERCE_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("COMMERCE_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the commerce binary starts");
        let stdout = child.stdout.take().expect("a piped stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child: Some(child),
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (20 s at most) for a line `wanted` accepts; every line read is kept in `seen`.
    pub async fn until(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push(line.clone());
                if wanted(&line) {
                    return line;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no such line; printed so far: {:#?}",
                self.seen
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// Ctrl-C, as an operator ends a tail: its exit code.
    pub async fn interrupt(mut self) -> Option<i32> {
        let mut child = self.child.take().expect("the tail runs");
        let pid = child.id().to_string();
        let status = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("`kill` runs");
        assert!(status.success());
        tokio::task::spawn_blocking(move || child.wait().expect("the tail ends").code())
            .await
            .expect("the wait task")
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

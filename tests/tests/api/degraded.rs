//! Degraded mode: NATS goes away under a running engine. Commands are still accepted (the event
//! store is the truth), the outage shows in `/health/ready` and `commerce_relay_connected`, and
//! once NATS is back the relay publishes the backlog and the read models show every command.
//!
//! The test runs a nats-server of its own (on a free port, with its own store directory), and
//! only ever signals that process.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{spawn_app_with, TestApp};

/// A nats-server child of this test, with JetStream on a directory of its own.
struct NatsServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("commerce-degraded-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self {
            port,
            dir,
            child: None,
        };
        server.spawn();
        server
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts it (again: same port, same store) and waits until it accepts connections.
    fn spawn(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new("nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is on the PATH");
        self.child = Some(child);
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nats-server did not listen on {}", self.port);
    }

    /// SIGKILL of our own child, reaped.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `/health/ready` until `done` holds for its status and body (30 s at most).
async fn ready_until(
    app: &TestApp,
    what: &str,
    done: impl Fn(StatusCode, &Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let response = app.request(Method::GET, "/health/ready", None, None).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        if done(status, &body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// GET `path` once the read models have applied `position`, asking again after each 503 (the
/// engine's wait is short here) for 30 s at most.
async fn read_when_caught_up(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    position: i64,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let response = app.read(path, token, position).await;
        if response.status() != StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(response.status(), StatusCode::OK, "GET {path}");
            return response.json().await.unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "GET {path} never caught up with {position}"
        );
    }
}

/// The value of `commerce_relay_connected` for this engine's namespace.
async fn relay_connected(app: &TestApp) -> Option<String> {
    let text = app
        .request(Method::GET, "/metrics", None, None)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("# HELP commerce_relay_connected"),
        "the gauge is described"
    );
    let series = format!(
        "commerce_relay_connected{{namespace=\"{}\"}} ",
        app.namespace
    );
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map(str::to_owned)
}

#[tokio::test]
async fn commands_are_accepted_while_nats_is_down_and_read_back_once_it_returns() {
    let mut nats = NatsServer::start();
    let app = spawn_app_with(|config| {
        config.nats_url = nats.url();
        config.min_position_wait = Duration::from_millis(500);
        config.outage_error_after = Duration::from_secs(1);
    })
    .await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "LAMP", 4500, 3).await;
    let at = app.last_position().await;
    read_when_caught_up(&app, "/v1/inventory/LAMP", None, at).await;
    ready_until(&app, "the relay publishing", |status, body| {
        status == StatusCode::OK && body["relay"] == "active"
    })
    .await;
    assert_eq!(relay_connected(&app).await.as_deref(), Some("1"));

    nats.kill();
    let body = ready_until(&app, "NATS and the relay down", |status, body| {
        status == StatusCode::SERVICE_UNAVAILABLE
            && body["nats"] == "down"
            && body["relay"] == "down"
    })
    .await;
    for component in ["nats", "relay"] {
        let down = &body["down"][component];
        let since = down["since"].as_str().unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_rfc3339(since).is_ok(),
            "{component} says since when it is down: {body}"
        );
        assert!(
            down["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{body}"
        );
    }
    assert_eq!(body["postgres"], "up");
    assert_eq!(relay_connected(&app).await.as_deref(), Some("0"));

    // The store is the truth: commands are accepted meanwhile.
    let (_, buyer) = app.account("buyer").await;
    let response = app
        .post(
            "/v1/inventory/LAMP/restock",
            Some(&seller),
            json!({"quantity": 7}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .post(
            "/v1/products",
            Some(&seller),
            json!({"sku": "SHADE", "name": "A shade", "description": "For the lamp",
                   "price": {"amount": 900, "currency": "EUR"}, "category": "test/things"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let shade: Value = response.json().await.unwrap();
    app.add_to_cart(&buyer, "LAMP", 2).await;
    let during = app.last_position().await;
    // Reads cannot promise them yet: a bounded wait, then 503.
    let stale = app.read("/v1/inventory/LAMP", None, during).await;
    assert_eq!(stale.status(), StatusCode::SERVICE_UNAVAILABLE);

    nats.spawn();
    ready_until(&app, "NATS and the relay back", |status, body| {
        status == StatusCode::OK && body["relay"] == "active" && body.get("down").is_none()
    })
    .await;
    assert_eq!(relay_connected(&app).await.as_deref(), Some("1"));

    // The backlog is drained: every command's effect is in the read models.
    let stock = read_when_caught_up(&app, "/v1/inventory/LAMP", None, during).await;
    assert_eq!(stock["available"], 10, "{stock}");
    let path = format!("/v1/products/{}", shade["product_id"].as_str().unwrap());
    let product = read_when_caught_up(&app, &path, None, during).await;
    assert_eq!(product["name"], "A shade", "{product}");
    let cart = read_when_caught_up(&app, "/v1/me/cart", Some(&buyer), during).await;
    assert_eq!(cart["items"][0]["sku"], "LAMP", "{cart}");
    assert_eq!(cart["items"][0]["quantity"], 2, "{cart}");
}

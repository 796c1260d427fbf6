//! A client that rides out faults: a request that fails to connect, times out or gets a 5xx is
//! sent again with the same `Idempotency-Key` until it gets an answer or its deadline passes.
//! Every acknowledged write is recorded, to be looked for in the event store afterwards.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

pub const PASSWORD: &str = "correct horse battery staple";

/// A write the engine said it did.
#[derive(Debug, Clone)]
pub struct Ack {
    /// `checkout`, `cancel` or `restock`.
    pub kind: &'static str,
    /// The order or SKU it is about.
    pub subject: String,
    /// `X-Event-Position` of the response.
    pub position: Option<i64>,
    /// Units, for a restock.
    pub quantity: i64,
    pub idempotency_key: String,
}

/// How a request ended.
#[derive(Debug)]
pub enum Answer {
    /// 2xx.
    Ok { body: Value, position: Option<i64> },
    /// A 4xx: the engine refused (a business rule), nothing to retry.
    Refused { status: StatusCode, body: Value },
    /// No answer before the deadline.
    GaveUp(String),
}

#[derive(Default, Debug)]
pub struct Stats {
    pub retries: u64,
    pub gave_up: u64,
    pub refused: u64,
}

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    pub command_url: String,
    pub query_url: String,
    pub acks: Arc<Mutex<Vec<Ack>>>,
    /// Writes that got no answer before their deadline: they may or may not have happened.
    pub uncertain: Arc<Mutex<Vec<Ack>>>,
    pub stats: Arc<Mutex<Stats>>,
}

/// How long one logical request keeps being retried.
const REQUEST_DEADLINE: Duration = Duration::from_secs(60);

impl Api {
    pub fn new(command_url: String, query_url: String) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .connect_timeout(Duration::from_secs(2))
                .pool_idle_timeout(Duration::from_secs(5))
                .build()
                .expect("an HTTP client"),
            command_url,
            query_url,
            acks: Arc::default(),
            uncertain: Arc::default(),
            stats: Arc::default(),
        }
    }

    /// Sends until answered: the same key and body every time.
    pub async fn send(
        &self,
        method: Method,
        url: String,
        token: Option<&str>,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
        min_position: Option<i64>,
    ) -> Answer {
        let deadline = Instant::now() + REQUEST_DEADLINE;
        let mut last_error;
        loop {
            let mut request = self.http.request(method.clone(), &url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            if let Some(key) = idempotency_key {
                request = request.header("idempotency-key", key);
            }
            if let Some(position) = min_position {
                request = request.header("x-min-position", position.to_string());
            }
            match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let position = response
                        .headers()
                        .get("x-event-position")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok());
                    let text = response.text().await.unwrap_or_default();
                    let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
                    if status.is_success() {
                        return Answer::Ok { body, position };
                    }
                    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                        last_error = format!("{status}: {body}");
                    } else {
                        self.stats.lock().expect("stats").refused += 1;
                        return Answer::Refused { status, body };
                    }
                }
                Err(error) => last_error = format!("{error}"),
            }
            if Instant::now() >= deadline {
                self.stats.lock().expect("stats").gave_up += 1;
                return Answer::GaveUp(format!("{method} {url}: {last_error}"));
            }
            self.stats.lock().expect("stats").retries += 1;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub async fn command(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> Answer {
        let key = Uuid::new_v4().to_string();
        self.command_with_key(method, path, token, body, &key).await
    }

    pub async fn command_with_key(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Value,
        key: &str,
    ) -> Answer {
        let url = format!("{}{path}", self.command_url);
        self.send(method, url, token, Some(&body), Some(key), None)
            .await
    }

    pub async fn query(&self, path: &str, token: &str, min_position: Option<i64>) -> Answer {
        let url = format!("{}{path}", self.query_url);
        self.send(Method::GET, url, Some(token), None, None, min_position)
            .await
    }

    pub fn record(&self, ack: Ack) {
        self.acks.lock().expect("acks").push(ack);
    }

    /// Registers an account and signs in: `(account_id, token)`.
    pub async fn account(&self, role: &str) -> (Uuid, String) {
        let email = format!("{role}-{}@example.com", Uuid::new_v4().simple());
        let body =
            json!({"email": email, "password": PASSWORD, "name": "Fault Tester", "role": role});
        let id = match self.command(Method::POST, "/v1/accounts", None, body).await {
            Answer::Ok { body, .. } => body["account_id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("an account id"),
            other => panic!("registering a {role}: {other:?}"),
        };
        let body = json!({"email": email, "password": PASSWORD});
        let token = match self
            .command(Method::POST, "/v1/auth/token", None, body)
            .await
        {
            Answer::Ok { body, .. } => body["access_token"]
                .as_str()
                .expect("an access token")
                .to_owned(),
            other => panic!("signing in as {email}: {other:?}"),
        };
        (id, token)
    }

    /// Creates a product selling `sku` (no stock).
    pub async fn product(&self, seller: &str, sku: &str, price: i64) {
        let body = json!({"sku": sku, "name": format!("Product {sku}"), "description": "Fault-injection stock",
            "price": {"amount": price, "currency": "EUR"}, "category": "test/faults", "attributes": {}});
        match self
            .command(Method::POST, "/v1/products", Some(seller), body)
            .await
        {
            Answer::Ok { .. } => {}
            other => panic!("creating product {sku}: {other:?}"),
        }
    }

    /// Restocks `sku`; recorded when acknowledged (`true`), or as uncertain when unanswered.
    pub async fn restock(&self, seller: &str, sku: &str, quantity: i64) -> bool {
        let key = Uuid::new_v4().to_string();
        let path = format!("/v1/inventory/{sku}/restock");
        let body = json!({"quantity": quantity});
        match self
            .command_with_key(Method::POST, &path, Some(seller), body, &key)
            .await
        {
            Answer::Ok { position, .. } => {
                self.record(Ack {
                    kind: "restock",
                    subject: sku.to_owned(),
                    position,
                    quantity,
                    idempotency_key: key,
                });
                true
            }
            Answer::Refused { .. } => false,
            Answer::GaveUp(_) => {
                self.uncertain.lock().expect("uncertain").push(Ack {
                    kind: "restock",
                    subject: sku.to_owned(),
                    position: None,
                    quantity,
                    idempotency_key: key,
                });
                false
            }
        }
    }
}

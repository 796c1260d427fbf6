//! `spawn_app()`: an engine of its own for each test, and a client that speaks its API.

use commerce::{Application, Config};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "admin-password";
pub const PASSWORD: &str = "correct horse battery";

/// A running engine, its database and an HTTP client. Dropping it stops the engine; dropping
/// the first one also drops the database and the namespace's stream.
pub struct TestApp {
    pub address: String,
    /// The payment gateway the engine talks to (the in-process sandbox unless configured).
    pub gateway_url: String,
    pub pool: PgPool,
    pub client: reqwest::Client,
    pub database_url: String,
    database: String,
    shutdown: CancellationToken,
    owns_database: bool,
    pub namespace: String,
    pub nats_url: String,
    /// The secret the engine signs with, when the test configured one.
    jwt_secret: Option<String>,
}

fn config(database_url: &str) -> Config {
    let mut config = Config::defaults();
    config.database_url = database_url.to_owned();
    config.nats_url = std::env::var("NATS_URL").unwrap_or(config.nats_url);
    config.namespace = format!("test_{}", Uuid::new_v4().simple());
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.admin_email = Some(ADMIN_EMAIL.into());
    config.admin_password = Some(ADMIN_PASSWORD.into());
    config.db_pool_size = Some(10);
    // A secret of this test's own, so that it can mint tokens the engine's signature check
    // accepts (expired ones, ghosts).
    config.jwt_secret = Some(format!("test-secret-{}", Uuid::new_v4().simple()));
    // Every test runs from 127.0.0.1, many at once: only the test of rate limiting is limited.
    config.rate_limit_per_second = 1_000_000;
    config.rate_limit_burst = 1_000_000;
    config
}

async fn start(config: Config, database: String, owns_database: bool) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        commerce::telemetry::init_logging();
    }
    let database_url = config.database_url.clone();
    let (namespace, nats_url) = (config.namespace.clone(), config.nats_url.clone());
    let jwt_secret = config.jwt_secret.clone();
    let app = Application::build(config).await.expect("the engine starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    let gateway_url = app.payment_gateway_url().to_owned();
    let pool = app.pool().clone();
    let shutdown = app.shutdown_token();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        gateway_url,
        pool,
        client: reqwest::Client::new(),
        database_url,
        database,
        shutdown,
        owns_database,
        namespace,
        nats_url,
        jwt_secret,
    }
}

/// An engine on a fresh database with a random name.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// An engine on a fresh database, with `adjust` applied to its configuration.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let database = format!("commerce_test_{}", Uuid::new_v4().simple());
    let url =
        commerce_store::db::with_database(&commerce_store::db::database_url_from_env(), &database);
    let mut config = config(&url);
    adjust(&mut config);
    start(config, database, true).await
}

impl TestApp {
    /// A second engine process on the same database, as another replica would be.
    pub async fn spawn_replica(&self) -> TestApp {
        let mut config = config(&self.database_url);
        config.namespace = self.namespace.clone();
        config.jwt_secret = self.jwt_secret.clone();
        start(config, self.database.clone(), false).await
    }

    /// Keys signing as the engine does (they issue tokens; the engine decides whether it
    /// accepts them).
    pub fn jwt(&self) -> commerce_http::JwtKeys {
        let secret = self
            .jwt_secret
            .as_ref()
            .expect("the test configured the engine's secret");
        commerce_http::JwtKeys::new(secret.as_bytes(), 3600)
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("the request is sent")
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        self.request(Method::POST, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        self.request(Method::PUT, path, token, Some(body)).await
    }

    /// Registers an account with a fresh e-mail and signs in: `(account_id, token)`.
    pub async fn account(&self, role: &str) -> (Uuid, String) {
        let email = format!("{role}-{}@example.com", Uuid::new_v4().simple());
        let response = self
            .post(
                "/v1/accounts",
                None,
                json!({"email": email, "password": PASSWORD, "name": "Test", "role": role}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let id: Uuid = response.json::<Value>().await.unwrap()["account_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        (id, self.token(&email, PASSWORD).await)
    }

    pub async fn token(&self, email: &str, password: &str) -> String {
        let response = self
            .post(
                "/v1/auth/token",
                None,
                json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK, "signing in as {email}");
        response.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn admin_token(&self) -> String {
        self.token(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// Creates a product selling `sku` at `price` EUR cents and stocks it: its product id.
    pub async fn product(&self, seller: &str, sku: &str, price: i64, stock: i64) -> Uuid {
        let response = self
            .post(
                "/v1/products",
                Some(seller),
                json!({"sku": sku, "name": format!("Product {sku}"), "description": "A test product",
                       "price": {"amount": price, "currency": "EUR"}, "category": "test/things",
                       "attributes": {"colour": "red"}}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let id = response.json::<Value>().await.unwrap()["product_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        if stock > 0 {
            let response = self
                .post(
                    &format!("/v1/inventory/{sku}/restock"),
                    Some(seller),
                    json!({"quantity": stock}),
                )
                .await;
            assert_eq!(response.status(), StatusCode::OK);
        }
        id
    }

    /// Puts `quantity` of `sku` in the buyer's cart.
    pub async fn add_to_cart(&self, buyer: &str, sku: &str, quantity: u32) {
        let response = self
            .put(
                &format!("/v1/me/cart/items/{sku}"),
                Some(buyer),
                json!({"quantity": quantity}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    /// Checks the buyer's cart out: the order id.
    pub async fn checkout(&self, buyer: &str) -> Uuid {
        let response = self
            .post("/v1/me/cart/checkout", Some(buyer), checkout_body())
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        response.json::<Value>().await.unwrap()["order_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Holds the next rebuild of `projection` in its first step until the transaction returned
    /// ends: making its shadow schema anew must drop a table this transaction keeps locked.
    pub async fn hold_rebuild(
        &self,
        projection: &str,
    ) -> sqlx::Transaction<'static, sqlx::Postgres> {
        sqlx::query(&format!("CREATE SCHEMA rebuild_{projection}"))
            .execute(&self.pool)
            .await
            .unwrap();
        sqlx::query(&format!("CREATE TABLE rebuild_{projection}.held (x int)"))
            .execute(&self.pool)
            .await
            .unwrap();
        let mut holder = self.pool.begin().await.unwrap();
        sqlx::query(&format!(
            "LOCK TABLE rebuild_{projection}.held IN ACCESS SHARE MODE"
        ))
        .execute(&mut *holder)
        .await
        .unwrap();
        holder
    }

    /// How many events the store holds.
    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// The event types of one stream, in order.
    pub async fn stream(&self, aggregate_type: &str, id: &str) -> Vec<String> {
        sqlx::query_scalar("SELECT event_type FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence")
            .bind(aggregate_type)
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }

    /// Polls the order until its status is one of `statuses` (the saga runs in the background).
    pub async fn wait_for_order(&self, order_id: Uuid, token: &str, statuses: &[&str]) -> Value {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let response = self
                .request(
                    Method::GET,
                    &format!("/v1/orders/{order_id}"),
                    Some(token),
                    None,
                )
                .await;
            if response.status() == StatusCode::OK {
                let order: Value = response.json().await.unwrap();
                if statuses.contains(&order["status"].as_str().unwrap_or_default()) {
                    return order;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "order stuck at {order}"
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "order {order_id} never appeared"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Waits (20 s at most) until the stream holds an `event_type` event: work running in the
    /// background (a saga worker) got that far.
    pub async fn wait_for_event(&self, aggregate_type: &str, id: &str, event_type: &str) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        while !self
            .stream(aggregate_type, id)
            .await
            .iter()
            .any(|e| e == event_type)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{aggregate_type} {id} never recorded {event_type}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

pub fn checkout_body() -> Value {
    json!({"payment_token": "tok_ok", "shipping_address": {
        "name": "Ada Lovelace", "line1": "12 St James's Square", "city": "London", "postal_code": "SW1Y 4JH", "country": "GB"}})
}

/// Asserts a problem+json response with `status`.
pub async fn assert_problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.unwrap();
    for field in ["type", "title", "status", "detail"] {
        assert!(
            body.get(field).is_some(),
            "problem without `{field}`: {body}"
        );
    }
    assert_eq!(body["status"], status.as_u16());
    body
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if !self.owns_database {
            return;
        }
        let stream = commerce_projections::Namespace::parse(&self.namespace)
            .ok()
            .map(|n| (self.nats_url.clone(), n.stream_name()));
        crate::cleanup::drop_database(&self.database, stream);
    }
}

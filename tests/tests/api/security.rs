//! Tokens, sign-in throttling, rate limits and secrets kept out of `--help` and the logs.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use commerce_domain::{AccountId, Role};
use commerce_http::JwtKeys;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::cli::commerce;
use crate::helpers::{assert_problem, spawn_app, spawn_app_with, TestApp, ADMIN_EMAIL, PASSWORD};

/// The secret engines once signed with when none was configured, still in old deployments'
/// muscle memory.
const OLD_DEVELOPMENT_SECRET: &str = "commerce-development-secret-do-not-use-in-production";

/// Every string literal of 8 characters or more in the workspace's Rust sources: whatever a
/// reader of the source could try as a signing secret.
fn source_constants() -> BTreeSet<String> {
    fn walk(dir: &Path, found: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                if name != "target" && !name.to_string_lossy().starts_with('.') {
                    walk(&path, found);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for literal in text.split('"').skip(1).step_by(2) {
                    if literal.len() >= 8 && !literal.contains('\n') {
                        found.insert(literal.to_owned());
                    }
                }
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut found = BTreeSet::new();
    walk(root, &mut found);
    found.insert(OLD_DEVELOPMENT_SECRET.to_owned());
    found
}

async fn account_id(app: &TestApp, email: &str) -> Uuid {
    sqlx::query_scalar("SELECT account_id FROM email_claims WHERE email = $1")
        .bind(email)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_token_signed_with_any_constant_of_the_source_is_401() {
    // As `make run` starts it: no COMMERCE_JWT_SECRET.
    let app = spawn_app_with(|config| config.jwt_secret = None).await;
    let admin = AccountId(account_id(&app, ADMIN_EMAIL).await);
    let constants = source_constants();
    assert!(constants.len() > 100, "the source was not found");
    let refused = futures::stream::iter(constants)
        .map(|secret| {
            let app = &app;
            async move {
                let forged = JwtKeys::new(secret.as_bytes(), 3600)
                    .issue(admin, Role::Admin, 1)
                    .unwrap();
                let response = app
                    .request(Method::GET, "/v1/admin/projections", Some(&forged), None)
                    .await;
                (secret, response.status())
            }
        })
        .buffer_unordered(16)
        .filter(|(_, status)| std::future::ready(*status != StatusCode::UNAUTHORIZED))
        .collect::<Vec<_>>()
        .await;
    assert!(refused.is_empty(), "accepted or not refused: {refused:?}");
    // The admin's own token still works: the route was reachable all along.
    let token = app.admin_token().await;
    let response = app
        .request(Method::GET, "/v1/admin/projections", Some(&token), None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_unknown_environment_name_refuses_to_start() {
    for name in ["Production", "prod", "PRODUCTION", "staging"] {
        let run = commerce(
            &["serve"],
            &[
                ("COMMERCE_ENV", name),
                // Nothing listens there: were the name accepted, starting would fail later
                // with another message.
                ("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none"),
            ],
            "",
        )
        .await;
        assert_ne!(run.code, 0, "{name}: {run:?}");
        assert!(
            run.stderr.contains(name) && run.stderr.contains("development, test, production"),
            "{name}: {run:?}"
        );
    }
}

#[tokio::test]
async fn serve_help_prints_no_secret_from_the_environment() {
    let run = commerce(
        &["serve", "--help"],
        &[
            ("DATABASE_URL", "postgres://app:S3cretPw@db/x"),
            ("NATS_URL", "nats://user:Nat5Secret@nats:4222"),
            (
                "COMMERCE_JWT_SECRET",
                "jwt-Secret-0123456789abcdef0123456789",
            ),
            ("COMMERCE_ADMIN_PASSWORD", "Adm1nSecret"),
            (
                "COMMERCE_PAYMENT_GATEWAY_URL",
                "https://key:GatewaySecret@pay.example",
            ),
        ],
        "",
    )
    .await;
    let help = run.ok();
    assert!(help.contains("DATABASE_URL"), "{help}");
    for secret in [
        "S3cretPw",
        "Nat5Secret",
        "jwt-Secret",
        "Adm1nSecret",
        "GatewaySecret",
    ] {
        assert!(!help.contains(secret), "`{secret}` printed:\n{help}");
    }
}

async fn sign_in(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.post(
        "/v1/auth/token",
        None,
        json!({"email": email, "password": password}),
    )
    .await
}

/// The `Retry-After` of a 429 problem, in seconds.
async fn retry_after(response: reqwest::Response) -> u64 {
    let seconds = response
        .headers()
        .get("retry-after")
        .expect("a 429 carries Retry-After")
        .to_str()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(seconds >= 1);
    seconds
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_then_the_right_password_works_after_the_delay() {
    let app = spawn_app().await;
    let email = format!("victim-{}@example.com", Uuid::new_v4().simple());
    let response = app
        .post(
            "/v1/accounts",
            None,
            json!({"email": email, "password": PASSWORD, "name": "V", "role": "buyer"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);

    // Three free failures, then the fourth blocks the account for this address.
    for _ in 0..4 {
        let response = sign_in(&app, &email, "not the password").await;
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
    // Blocked: even the right password waits, and says how long.
    let wait = retry_after(sign_in(&app, &email, PASSWORD).await).await;
    assert!(wait <= 2, "the first delay is about a second: {wait}");
    tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(100)).await;
    let response = sign_in(&app, &email, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);

    // The success cleared the count: three more failures are free again.
    for _ in 0..3 {
        let response = sign_in(&app, &email, "not the password").await;
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
    assert_eq!(
        sign_in(&app, &email, PASSWORD).await.status(),
        StatusCode::OK
    );

    // An unknown e-mail counts, and is throttled, exactly like a wrong password.
    let nobody = format!("nobody-{}@example.com", Uuid::new_v4().simple());
    for _ in 0..4 {
        let response = sign_in(&app, &nobody, PASSWORD).await;
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
    retry_after(sign_in(&app, &nobody, PASSWORD).await).await;
}

#[tokio::test]
async fn a_burst_over_the_rate_limit_gets_429s_and_no_5xx() {
    let app = spawn_app_with(|config| {
        config.rate_limit_per_second = 1;
        config.rate_limit_burst = 5;
    })
    .await;
    // Two requests of this address's five: a buyer of its own, with a budget of its own.
    let email = format!("b-{}@example.com", Uuid::new_v4().simple());
    let response = app
        .post(
            "/v1/accounts",
            None,
            json!({"email": email, "password": PASSWORD, "name": "B", "role": "buyer"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let buyer = app.token(&email, PASSWORD).await;

    let responses = futures::future::join_all(
        (0..30).map(|_| app.request(Method::GET, "/v1/products", None, None)),
    )
    .await;
    let mut limited = 0;
    for response in responses {
        let status = response.status();
        assert!(!status.is_server_error(), "{status}");
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
            retry_after(response).await;
        } else {
            assert_eq!(status, StatusCode::OK);
        }
    }
    assert!(limited >= 25, "only {limited} of 30 were limited");

    // The signed-in buyer is another caller: not limited by the address's burst.
    let response = app
        .request(Method::GET, "/v1/me/cart", Some(&buyer), None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    // Health and metrics are never limited, and the metric counts the refusals.
    let health = app.request(Method::GET, "/health/live", None, None).await;
    assert_eq!(health.status(), StatusCode::OK);
    let metrics = app.request(Method::GET, "/metrics", None, None).await;
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("# HELP commerce_rate_limited_requests_total"),
        "{text}"
    );
    let counted = text
        .lines()
        .find_map(|l| l.strip_prefix("commerce_rate_limited_requests_total "))
        .map(|v| v.trim().parse::<f64>().unwrap())
        .unwrap_or_default();
    assert!(counted >= f64::from(limited), "{counted}");
}

#[tokio::test]
async fn a_well_signed_token_for_an_account_that_does_not_exist_is_401() {
    let app = spawn_app().await;
    let ghost = app.jwt().issue(AccountId::new(), Role::Admin, 1).unwrap();
    let response = app
        .request(Method::GET, "/v1/admin/projections", Some(&ghost), None)
        .await;
    assert_problem(response, StatusCode::UNAUTHORIZED).await;

    let events = app.event_count().await;
    let ghost_seller = app.jwt().issue(AccountId::new(), Role::Seller, 1).unwrap();
    let response = app
        .post(
            "/v1/products",
            Some(&ghost_seller),
            json!({"sku": "GHOST", "name": "Ghost", "price": {"amount": 100, "currency": "EUR"},
                   "category": "test/things"}),
        )
        .await;
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
    assert_eq!(app.event_count().await, events, "a ghost appended events");
}

#[tokio::test]
async fn a_revoked_token_is_401_and_signing_in_again_works() {
    let app = spawn_app().await;
    let email = format!("r-{}@example.com", Uuid::new_v4().simple());
    app.post(
        "/v1/accounts",
        None,
        json!({"email": email, "password": PASSWORD, "name": "R", "role": "buyer"}),
    )
    .await;
    let id = account_id(&app, &email).await;
    let token = app.token(&email, PASSWORD).await;
    let admin = app.admin_token().await;
    let revoke = format!("/v1/admin/accounts/{id}/revoke");

    // Only an admin revokes, and only an account that exists.
    let response = app.post(&revoke, Some(&token), json!({})).await;
    assert_problem(response, StatusCode::FORBIDDEN).await;
    let unknown = format!("/v1/admin/accounts/{}/revoke", Uuid::now_v7());
    assert_problem(
        app.post(&unknown, Some(&admin), json!({})).await,
        StatusCode::NOT_FOUND,
    )
    .await;

    let response = app.post(&revoke, Some(&admin), json!({})).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = app
        .request(Method::GET, "/v1/me/cart", Some(&token), None)
        .await;
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
    let response = app
        .put(
            "/v1/me/cart/items/ANY",
            Some(&token),
            json!({"quantity": 1}),
        )
        .await;
    assert_problem(response, StatusCode::UNAUTHORIZED).await;

    let fresh = app.token(&email, PASSWORD).await;
    let response = app
        .request(Method::GET, "/v1/me/cart", Some(&fresh), None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    // The admin's own token was untouched.
    let response = app
        .request(Method::GET, "/v1/admin/projections", Some(&admin), None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn changing_the_password_invalidates_earlier_tokens() {
    let app = spawn_app().await;
    let email = format!("p-{}@example.com", Uuid::new_v4().simple());
    app.post(
        "/v1/accounts",
        None,
        json!({"email": email, "password": PASSWORD, "name": "P", "role": "buyer"}),
    )
    .await;
    let old = app.token(&email, PASSWORD).await;
    let other_device = app.token(&email, PASSWORD).await;
    let new_password = "a brand new passphrase";

    let change = |token: &str, current: &str, new: &str| {
        let token = token.to_owned();
        let body = json!({"current_password": current, "new_password": new});
        let app = &app;
        async move { app.post("/v1/me/password", Some(&token), body).await }
    };
    assert_problem(
        app.post(
            "/v1/me/password",
            None,
            json!({"current_password": PASSWORD, "new_password": new_password}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_problem(
        change(&old, "not the password", new_password).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_problem(
        change(&old, PASSWORD, "short").await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let response = change(&old, PASSWORD, new_password).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    for token in [&old, &other_device] {
        let response = app
            .request(Method::GET, "/v1/me/cart", Some(token), None)
            .await;
        assert_problem(response, StatusCode::UNAUTHORIZED).await;
    }
    assert_problem(
        sign_in(&app, &email, PASSWORD).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let fresh = app.token(&email, new_password).await;
    let response = app
        .request(Method::GET, "/v1/me/cart", Some(&fresh), None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

/// `commerce serve` as a process of its own, its standard output and error in a file.
struct LoggedEngine {
    child: std::process::Child,
    address: String,
    log: std::path::PathBuf,
    database: String,
}

impl LoggedEngine {
    async fn start() -> Self {
        let database = format!("commerce_test_{}", Uuid::new_v4().simple());
        let database_url = commerce_store::db::with_database(
            &commerce_store::db::database_url_from_env(),
            &database,
        );
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let log = std::env::temp_dir().join(format!("{database}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = std::process::Command::new(crate::binary::commerce_binary())
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &database_url)
            .env(
                "NATS_URL",
                std::env::var("NATS_URL").unwrap_or("nats://127.0.0.1:4222".into()),
            )
            .env(
                "COMMERCE_NAMESPACE",
                format!("test_{}", Uuid::new_v4().simple()),
            )
            .env("COMMERCE_BIND", format!("127.0.0.1:{port}"))
            .env("COMMERCE_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("COMMERCE_ADMIN_PASSWORD", crate::helpers::ADMIN_PASSWORD)
            .env("COMMERCE_ENV", "test")
            // As verbose as an operator chasing a problem would make it.
            .env("RUST_LOG", "debug")
            .env("COMMERCE_LOG_FORMAT", "json")
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("the commerce binary starts");
        let engine = Self {
            child,
            address: format!("http://127.0.0.1:{port}"),
            log,
            database,
        };
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let ready = client
                .get(format!("{}/health/ready", engine.address))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return engine;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the engine never became ready:\n{}",
                std::fs::read_to_string(&engine.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for LoggedEngine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
        crate::cleanup::drop_database(&self.database, None);
    }
}

#[tokio::test]
async fn the_log_of_a_journey_holds_no_password_token_or_hash() {
    let engine = LoggedEngine::start().await;
    let client = reqwest::Client::new();
    let call = |method: Method, path: &str, token: Option<&str>, body: Value| {
        let mut request = client.request(method, format!("{}{path}", engine.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.json(&body).send().await.unwrap() }
    };
    let seller_password = "seller-Pa55word-in-the-clear";
    let buyer_password = "buyer-Pa55word-in-the-clear";
    let new_password = "buyer-N3w-Pa55word-in-the-clear";
    let mut tokens = Vec::new();
    let sign_up = |role: &'static str, password: &'static str| {
        let email = format!("{role}-{}@example.com", Uuid::new_v4().simple());
        let call = &call;
        async move {
            let response = call(
                Method::POST,
                "/v1/accounts",
                None,
                json!({"email": email, "password": password, "name": "Logged", "role": role}),
            )
            .await;
            assert_eq!(response.status(), StatusCode::CREATED);
            let response = call(
                Method::POST,
                "/v1/auth/token",
                None,
                json!({"email": email, "password": password}),
            )
            .await;
            let body: Value = response.json().await.unwrap();
            body["access_token"].as_str().unwrap().to_owned()
        }
    };
    let seller = sign_up("seller", seller_password).await;
    let buyer = sign_up("buyer", buyer_password).await;
    tokens.push(seller.clone());
    tokens.push(buyer.clone());
    let response = call(
        Method::POST,
        "/v1/products",
        Some(&seller),
        json!({"sku": "LOGMUG", "name": "Mug", "price": {"amount": 900, "currency": "EUR"},
               "category": "test/things"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = call(
        Method::POST,
        "/v1/inventory/LOGMUG/restock",
        Some(&seller),
        json!({"quantity": 5}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = call(
        Method::PUT,
        "/v1/me/cart/items/LOGMUG",
        Some(&buyer),
        json!({"quantity": 1}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = call(
        Method::POST,
        "/v1/me/cart/checkout",
        Some(&buyer),
        crate::helpers::checkout_body(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let order: Value = response.json().await.unwrap();
    let order_id = order["order_id"].as_str().unwrap().to_owned();
    // The saga runs the payment through the gateway: wait for it to confirm the order.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let response = call(
            Method::GET,
            &format!("/v1/orders/{order_id}"),
            Some(&buyer),
            json!(null),
        )
        .await;
        let body: Value = response.json().await.unwrap_or_default();
        if body["status"] == "confirmed" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the order never confirmed: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A wrong password, a password change, and a sign-in with the new one.
    let response = call(
        Method::POST,
        "/v1/me/password",
        Some(&buyer),
        json!({"current_password": "wrong-Pa55word-in-the-clear", "new_password": new_password}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = call(
        Method::POST,
        "/v1/me/password",
        Some(&buyer),
        json!({"current_password": buyer_password, "new_password": new_password}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let log = std::fs::read_to_string(&engine.log).unwrap();
    assert!(
        log.lines().count() > 20,
        "too little was logged to tell:\n{log}"
    );
    let mut secrets: Vec<&str> = vec![
        seller_password,
        buyer_password,
        new_password,
        "wrong-Pa55word",
        crate::helpers::ADMIN_PASSWORD,
        "$argon2",
        "tok_ok",
    ];
    secrets.extend(tokens.iter().map(String::as_str));
    for secret in secrets {
        assert!(!log.contains(secret), "the log holds `{secret}`");
    }
}

/// An account registered before credentials left the events: its `AccountRegistered` of
/// version 1 holds the hash. Upgrading copies the hash to the credentials table, so the
/// account still signs in, and no reader of events sees the hash again.
#[tokio::test]
async fn an_account_registered_with_its_hash_in_the_event_signs_in_after_the_upgrade_and_nobody_reads_the_hash(
) {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let database = format!("commerce_test_{}", Uuid::new_v4().simple());
    let url =
        commerce_store::db::with_database(&commerce_store::db::database_url_from_env(), &database);
    commerce_store::db::create_database_if_missing(&url)
        .await
        .unwrap();
    let pool = commerce_store::db::connect(&url, 2).await.unwrap();
    // The schema as it was before the credentials table.
    let mut before =
        sqlx::migrate::Migrator::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations"))
            .await
            .unwrap();
    before.migrations = before
        .migrations
        .iter()
        .filter(|m| m.version < 20261201000050)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before.run(&pool).await.unwrap();
    let password = "an old account's password";
    let hash = argon2::Argon2::default()
        .hash_password(
            password.as_bytes(),
            &SaltString::encode_b64(b"sixteen byte salt").unwrap(),
        )
        .unwrap()
        .to_string();
    let (id, email) = (
        Uuid::now_v7(),
        format!("old-{}@example.com", Uuid::new_v4().simple()),
    );
    sqlx::query("INSERT INTO email_claims (email, account_id) VALUES ($1, $2)")
        .bind(&email)
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('account', $1, 1, 'AccountRegistered', '1.0', $2, $3)",
    )
    .bind(id.to_string())
    .bind(json!({"AccountRegistered": {"email": email, "name": "Old", "role": "buyer", "password_hash": hash}}))
    .bind(json!({"correlation_id": id, "causation_id": id}))
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    // The upgraded engine migrates the rest at start.
    let app = spawn_app_with(|config| config.database_url = url.clone()).await;
    let token = app.token(&email, password).await;
    let response = app
        .request(Method::GET, "/v1/me/cart", Some(&token), None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    let admin = app.admin_token().await;
    let response = app
        .request(
            Method::GET,
            &format!("/v1/admin/streams/account/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    // The admin view shows events as stored (version 1 here), its credentials redacted.
    let stream = response.text().await.unwrap();
    assert!(
        !stream.contains(&hash) && !stream.contains("argon2"),
        "{stream}"
    );

    // The relay publishes it upcast: no message on the stream holds a hash.
    let namespace = commerce_projections::Namespace::parse(&app.namespace).unwrap();
    let jetstream = async_nats::jetstream::new(async_nats::connect(&app.nats_url).await.unwrap());
    let events = app.event_count().await as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut nats_stream = jetstream.get_stream(namespace.stream_name()).await.unwrap();
    while nats_stream.info().await.unwrap().state.messages < events {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relay never caught up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last = nats_stream.info().await.unwrap().state.last_sequence;
    for sequence in 1..=last {
        let message = nats_stream.get_raw_message(sequence).await.unwrap();
        let payload = String::from_utf8_lossy(&message.payload);
        assert!(!payload.contains("argon2"), "message {sequence}: {payload}");
    }

    drop(app);
    let mut admin =
        <sqlx::PgConnection as sqlx::Connection>::connect(&commerce_store::db::with_database(
            &commerce_store::db::database_url_from_env(),
            "postgres",
        ))
        .await
        .unwrap();
    sqlx::Executor::execute(
        &mut admin,
        format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)").as_str(),
    )
    .await
    .unwrap();
}

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app, ADMIN_EMAIL, PASSWORD};

#[tokio::test]
async fn registering_then_signing_in_yields_a_bearer_token() {
    let app = spawn_app().await;
    let response = app
        .post("/v1/accounts", None, json!({"email": "Ada@Example.com", "password": PASSWORD, "name": "Ada", "role": "buyer"}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(response.headers().get("x-event-position").is_some());
    let id = response.json::<Value>().await.unwrap()["account_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.stream("account", &id).await, ["AccountRegistered"]);

    let response = app
        .post(
            "/v1/auth/token",
            None,
            json!({"email": "ada@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_i64().unwrap() > 0);
    assert!(body["access_token"].as_str().unwrap().len() > 20);
}

#[tokio::test]
async fn the_password_is_stored_only_as_an_argon2_hash_beside_the_events() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/v1/accounts",
            None,
            json!({"email": "h@example.com", "password": PASSWORD, "name": "H", "role": "seller"}),
        )
        .await;
    let id: uuid::Uuid = response.json::<Value>().await.unwrap()["account_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (payload, version): (String, String) = sqlx::query_as(
        "SELECT payload::text, event_version FROM events WHERE aggregate_type = 'account' AND aggregate_id = $1",
    )
    .bind(id.to_string())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(!payload.contains(PASSWORD));
    assert!(!payload.contains("argon2"), "{payload}");
    assert_eq!(
        version,
        commerce_domain::upcast::current_version("account", "AccountRegistered")
    );
    let hash: String =
        sqlx::query_scalar("SELECT password_hash FROM credentials WHERE account_id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(hash.starts_with("$argon2id$"));
}

#[tokio::test]
async fn a_wrong_password_or_unknown_email_is_401() {
    let app = spawn_app().await;
    app.account("buyer").await;
    let response = app
        .post(
            "/v1/auth/token",
            None,
            json!({"email": ADMIN_EMAIL, "password": "not the password"}),
        )
        .await;
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
    let response = app
        .post(
            "/v1/auth/token",
            None,
            json!({"email": "nobody@example.com", "password": PASSWORD}),
        )
        .await;
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn the_configured_admin_exists_at_start_and_only_once() {
    let app = spawn_app().await;
    app.admin_token().await;
    // A second process on the same database finds the admin and creates nothing.
    let before = app.event_count().await;
    let replica = app.spawn_replica().await;
    replica.admin_token().await;
    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn nobody_registers_as_admin() {
    let app = spawn_app().await;
    let before = app.event_count().await;
    let response = app
        .post("/v1/accounts", None, json!({"email": "sneaky@example.com", "password": PASSWORD, "name": "S", "role": "admin"}))
        .await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(app.event_count().await, before);
}

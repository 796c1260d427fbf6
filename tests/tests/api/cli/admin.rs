//! `admin create`: straight on the database, through the bootstrap's own code path.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use uuid::Uuid;

use super::commerce;
use crate::helpers::{spawn_app, PASSWORD};

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
    let listed = commerce(
        &["projections", "list", "--json"],
        &[("COMMERCE_URL", &app.address), ("COMMERCE_TOKEN", &token)],
        "",
    )
    .await;
    assert!(listed.json()["items"].is_array(), "{listed:?}");

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

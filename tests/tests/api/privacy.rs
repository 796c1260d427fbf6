//! Privacy: personal data is sealed in events under a key per person, credentials never enter
//! events, and forgetting a person makes every read model show `"forgotten"` at once, for good,
//! also after a rebuild, while the events stay as they were.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_problem, spawn_app, TestApp, PASSWORD};

/// Values no event, event metadata or stream message may hold in the clear.
const NAME: &str = "Zenobia Quartermaine";
const STREET: &str = "17 Xylophone Crescent";
const CITY: &str = "Upper Wobbleton";

fn address() -> Value {
    json!({"name": NAME, "line1": STREET, "city": CITY, "postal_code": "QX1 7ZZ", "country": "GB"})
}

/// A buyer with a distinctive name and e-mail: `(account_id, email, token)`.
async fn person(app: &TestApp) -> (Uuid, String, String) {
    let email = format!("zenobia-{}@example.org", Uuid::new_v4().simple());
    let response = app
        .post(
            "/v1/accounts",
            None,
            json!({"email": email, "password": PASSWORD, "name": NAME, "role": "buyer"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let id = response.json::<Value>().await.unwrap()["account_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let token = app.token(&email, PASSWORD).await;
    (id, email, token)
}

/// The person's journey: an order delivered and reviewed. `(seller token, product, order)`.
async fn journey(app: &TestApp, buyer: &str) -> (String, Uuid, Uuid) {
    let (_, seller) = app.account("seller").await;
    let product = app.product(&seller, "PRIV-1", 1500, 5).await;
    app.add_to_cart(buyer, "PRIV-1", 1).await;
    let response = app
        .post(
            "/v1/me/cart/checkout",
            Some(buyer),
            json!({"payment_token": "tok_ok", "shipping_address": address()}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let order: Uuid = response.json::<Value>().await.unwrap()["order_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    app.wait_for_event("order", &order.to_string(), "OrderConfirmed")
        .await;
    for (step, body) in [
        (
            "shipments",
            json!({"carrier": "DHL", "tracking_number": "JD0001"}),
        ),
        ("delivery", json!({})),
    ] {
        let response = app
            .post(&format!("/v1/orders/{order}/{step}"), Some(&seller), body)
            .await;
        assert!(response.status().is_success(), "{step}");
    }
    let response = app
        .post(
            &format!("/v1/products/{product}/reviews"),
            Some(buyer),
            json!({"rating": 5, "title": "Lovely", "body": "Just right."}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    app.projections_settled().await;
    (seller, product, order)
}

/// Every event's payload and metadata as text, and every message on the namespace's stream.
async fn everything_stored_and_published(app: &TestApp) -> Vec<String> {
    let mut texts: Vec<String> =
        sqlx::query_scalar("SELECT payload::text || ' ' || metadata::text FROM events")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let namespace = commerce_projections::Namespace::parse(&app.namespace).unwrap();
    let jetstream = async_nats::jetstream::new(async_nats::connect(&app.nats_url).await.unwrap());
    let mut stream = jetstream.get_stream(namespace.stream_name()).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    for sequence in 1..=last {
        if let Ok(message) = stream.get_raw_message(sequence).await {
            texts.push(String::from_utf8_lossy(&message.payload).into_owned());
            texts.push(format!("{:?}", message.headers));
        }
    }
    assert!(texts.len() > 20, "{} texts", texts.len());
    texts
}

#[tokio::test]
async fn no_event_nor_stream_message_holds_personal_data_or_a_credential_in_the_clear() {
    let app = spawn_app().await;
    let (_, email, buyer) = person(&app).await;
    journey(&app, &buyer).await;
    // Everything the relay has published, too.
    let at = app.last_position().await;
    app.read_json("/v1/me/orders", Some(&buyer), at).await;

    let secrets = [
        email.as_str(),
        NAME,
        "Zenobia",
        STREET,
        CITY,
        "QX1 7ZZ",
        "$argon2",
        "tok_ok",
    ];
    for text in everything_stored_and_published(&app).await {
        for secret in secrets {
            assert!(!text.contains(secret), "`{secret}` in the clear: {text}");
        }
    }
    // Sealed, not dropped: the order and the review read back in the clear to who may see them.
    let orders = app.read_json("/v1/me/orders", Some(&buyer), at).await;
    assert_eq!(orders["items"][0]["shipping_address"], address());
}

#[tokio::test]
async fn a_forgotten_person_reads_forgotten_everywhere_for_good_and_cannot_sign_in() {
    let app = spawn_app().await;
    let (buyer_id, email, buyer) = person(&app).await;
    let (seller, product, order) = journey(&app, &buyer).await;
    let admin = app.admin_token().await;
    let at = app.last_position().await;

    // Before: the people who may see them see the person's data.
    let order_path = format!("/v1/orders/{order}");
    let reviews_path = format!("/v1/products/{product}/reviews");
    let seen = app.read_json(&order_path, Some(&seller), at).await;
    assert_eq!(seen["shipping_address"], address());
    let reviews = app.read_json(&reviews_path, None, at).await;
    assert_eq!(reviews["items"][0]["author_name"], NAME);
    assert!(
        reviews["items"][0].get("buyer_id").is_none(),
        "a review shows its author's name, not their id: {reviews}"
    );
    let notifications = app
        .read_json("/v1/me/notifications", Some(&buyer), at)
        .await;
    let shipped = |notifications: &Value| {
        notifications["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["kind"] == "order_shipped")
            .cloned()
            .expect("a shipped notification")
    };
    assert_eq!(shipped(&notifications)["ship_to"], address());
    let events_before = app.event_count().await;

    // Only the person, or an admin, may forget them.
    let forget_path = format!("/v1/admin/accounts/{buyer_id}/forget");
    for (token, status) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some(buyer.as_str()), StatusCode::FORBIDDEN),
        (Some(seller.as_str()), StatusCode::FORBIDDEN),
    ] {
        let response = app.request(Method::POST, &forget_path, token, None).await;
        assert_problem(response, status).await;
    }
    let unknown = format!("/v1/admin/accounts/{}/forget", Uuid::new_v4());
    let response = app
        .request(Method::POST, &unknown, Some(&admin), None)
        .await;
    assert_problem(response, StatusCode::NOT_FOUND).await;

    let response = app
        .request(Method::DELETE, "/v1/me", Some(&buyer), None)
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let forgotten_at = app.last_position().await;

    // At once, in every read model, for everyone.
    let seen = app
        .read_json(&order_path, Some(&seller), forgotten_at)
        .await;
    assert_eq!(seen["shipping_address"], "forgotten");
    assert_eq!(seen["status"], "delivered", "the order itself stays");
    let seen = app.read_json(&order_path, Some(&admin), forgotten_at).await;
    assert_eq!(seen["shipping_address"], "forgotten");
    let reviews = app.read_json(&reviews_path, None, forgotten_at).await;
    assert_eq!(reviews["items"][0]["author_name"], "forgotten");
    assert_eq!(reviews["items"][0]["rating"], 5, "the review itself stays");
    assert_eq!(notifications_ship_to(&app, buyer_id).await, ["forgotten"]);

    // The person can no longer sign in, and their tokens are refused.
    let response = app
        .post(
            "/v1/auth/token",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
    let response = app
        .request(Method::GET, "/v1/me/orders", Some(&buyer), None)
        .await;
    assert_problem(response, StatusCode::UNAUTHORIZED).await;

    // Forgetting again changes nothing; the events were never touched, one was added.
    let response = app
        .request(Method::POST, &forget_path, Some(&admin), None)
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(app.event_count().await, events_before + 1);
    assert_eq!(
        app.stream("account", &buyer_id.to_string()).await,
        ["AccountRegistered", "AccountForgotten"]
    );

    // Rebuilt from the events, the read models still show the person as forgotten.
    for projection in ["orders", "reviews", "notifications"] {
        let started = app
            .admin(
                Method::POST,
                &format!("/v1/admin/projections/{projection}/rebuild"),
                None,
                StatusCode::ACCEPTED,
            )
            .await;
        let location = format!(
            "/v1/admin/rebuilds/{}",
            started["rebuild_id"].as_str().unwrap()
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let progress = app.admin_get(&location).await;
            if ["completed", "failed", "cancelled"].contains(&progress["state"].as_str().unwrap()) {
                assert_eq!(progress["state"], "completed", "{projection}: {progress}");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{projection} was never rebuilt"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let seen = app
        .read_json(&order_path, Some(&seller), forgotten_at)
        .await;
    assert_eq!(seen["shipping_address"], "forgotten");
    let reviews = app.read_json(&reviews_path, None, forgotten_at).await;
    assert_eq!(reviews["items"][0]["author_name"], "forgotten");
    assert_eq!(notifications_ship_to(&app, buyer_id).await, ["forgotten"]);
}

/// The `ship_to` of the person's notifications, opened as the notifications route opens them
/// (the person, forgotten, can no longer sign in to read them).
async fn notifications_ship_to(app: &TestApp, account: Uuid) -> Vec<Value> {
    let mut rows: Value = sqlx::query_scalar(
        "SELECT COALESCE(jsonb_agg(ship_to), '[]') FROM rm_notifications \
         WHERE account_id = $1 AND ship_to IS NOT NULL",
    )
    .bind(account)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    commerce_store::keys::reveal(&app.pool, &mut rows)
        .await
        .unwrap();
    let mut values = rows.as_array().unwrap().clone();
    values.dedup();
    values
}

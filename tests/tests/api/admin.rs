//! The operators' routes under `/v1/admin`: who may call them, time travel, streams, dead
//! letters, stuck sagas, republishing and rebuilds.

use std::time::Duration;

use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_problem, spawn_app, spawn_app_with, TestApp};

impl TestApp {
    /// An admin request that must answer `status`: its JSON body.
    pub(crate) async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        status: StatusCode,
    ) -> Value {
        let token = self.admin_token().await;
        let response = self.request(method.clone(), path, Some(&token), body).await;
        let actual = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(actual, status, "{method} {path}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    pub(crate) async fn admin_get(&self, path: &str) -> Value {
        self.admin(Method::GET, path, None, StatusCode::OK).await
    }

    /// Polls `path` as an admin until `done` holds of its body (20 s at most).
    async fn admin_poll(&self, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let body = self.admin_get(path).await;
            if done(&body) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what} never happened: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every row of every read model (`rm_*`), by table, in a stable order.
    async fn read_models(&self) -> Vec<(String, Value)> {
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_name LIKE 'rm\\_%' ORDER BY table_name",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap();
        assert!(tables.len() > 5, "{tables:?}");
        let mut rows = Vec::new();
        for table in tables {
            let query = format!(
                "SELECT COALESCE(jsonb_agg(to_jsonb(t) ORDER BY t::text), '[]') FROM {table} t"
            );
            let dump: Value = sqlx::query_scalar(&query)
                .fetch_one(&self.pool)
                .await
                .unwrap();
            rows.push((table, dump));
        }
        rows
    }

    /// Waits until every projection has applied everything in the store.
    pub(crate) async fn projections_settled(&self) {
        let names: Vec<String> = self.admin_get("/v1/admin/projections").await["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let at = self.last_position().await;
        assert!(
            commerce_projections::wait_for_position(
                &self.pool,
                &names,
                at,
                Duration::from_secs(20)
            )
            .await
            .unwrap(),
            "the projections never reached position {at}"
        );
    }
}

/// A seller's product `sku` in stock and a buyer's order of it: `(buyer token, order id)`.
async fn an_order(app: &TestApp, sku: &str) -> (String, Uuid) {
    let (_, seller) = app.account("seller").await;
    app.product(&seller, sku, 1250, 5).await;
    app.order_with(sku, 1, "tok_ok").await
}

#[tokio::test]
async fn only_an_admin_may_call_an_admin_route() {
    let app = spawn_app().await;
    let (_, buyer) = app.account("buyer").await;
    let (_, seller) = app.account("seller").await;
    let id = Uuid::new_v4();
    let routes = [
        (Method::GET, format!("/v1/admin/streams/order/{id}")),
        (
            Method::GET,
            format!("/v1/admin/streams/order/{id}/state?as_of=1"),
        ),
        (Method::GET, "/v1/admin/events?after=0".to_owned()),
        (Method::POST, "/v1/admin/events/republish".to_owned()),
        (Method::GET, format!("/v1/admin/republishes/{id}")),
        (Method::GET, "/v1/admin/projections".to_owned()),
        (
            Method::POST,
            "/v1/admin/projections/orders/rebuild".to_owned(),
        ),
        (Method::GET, "/v1/admin/rebuilds".to_owned()),
        (Method::GET, format!("/v1/admin/rebuilds/{id}")),
        (Method::POST, format!("/v1/admin/rebuilds/{id}/cancel")),
        (Method::GET, "/v1/admin/dead-letters".to_owned()),
        (Method::GET, "/v1/admin/dead-letters/1".to_owned()),
        (Method::POST, "/v1/admin/dead-letters/1/retry".to_owned()),
        (Method::POST, "/v1/admin/dead-letters/retry".to_owned()),
        (Method::GET, "/v1/admin/sagas?stuck=true".to_owned()),
        (Method::GET, format!("/v1/admin/sagas/{id}")),
        (Method::POST, format!("/v1/admin/sagas/{id}/retry")),
    ];
    for (method, path) in &routes {
        let body = (method == Method::POST).then(|| json!({"from_position": 1}));
        for (who, token, status) in [
            ("anonymous", None, StatusCode::UNAUTHORIZED),
            ("a buyer", Some(buyer.as_str()), StatusCode::FORBIDDEN),
            ("a seller", Some(seller.as_str()), StatusCode::FORBIDDEN),
        ] {
            let response = app.request(method.clone(), path, token, body.clone()).await;
            assert_eq!(response.status(), status, "{who}: {method} {path}");
            assert_problem(response, status).await;
        }
    }
    // Nothing was started by the refused calls.
    let rebuilds = app.admin_get("/v1/admin/rebuilds").await;
    assert_eq!(rebuilds["items"], json!([]));
}

#[tokio::test]
async fn time_travel_shows_an_order_as_it_was() {
    let app = spawn_app().await;
    let (buyer, order_id) = an_order(&app, "MUG").await;
    app.wait_for_order(order_id, &buyer, &["confirmed"]).await;

    let stream = app
        .admin_get(&format!("/v1/admin/streams/order/{order_id}?limit=100"))
        .await;
    let events = stream["items"].as_array().unwrap();
    let reserved = events
        .iter()
        .find(|e| e["event_type"] == "InventoryReserved")
        .expect("the order was reserved");
    let position = reserved["position"].as_i64().unwrap();

    let state = app
        .admin_get(&format!(
            "/v1/admin/streams/order/{order_id}/state?as_of={position}"
        ))
        .await;
    assert_eq!(state["state"]["status"], "reserved", "{state}");
    assert_eq!(state["version"], reserved["sequence"]);
    assert_eq!(state["position"], position);
    assert_eq!(state["aggregate_type"], "order");
    assert_eq!(state["aggregate_id"], order_id.to_string());
    // The order keeps no card token: only its payment's reference.
    assert!(state["state"].get("payment_token").is_none(), "{state}");
    assert!(state["state"]["payment_id"].is_string(), "{state}");

    // As of the instant it was reserved, and now.
    let at = reserved["recorded_at"].as_str().unwrap();
    let state = app
        .admin_get(&format!(
            "/v1/admin/streams/order/{order_id}/state?as_of={}",
            urlencode(at)
        ))
        .await;
    assert_eq!(state["state"]["status"], "reserved", "{state}");
    let now = app
        .admin_get(&format!("/v1/admin/streams/order/{order_id}/state"))
        .await;
    assert_eq!(now["state"]["status"], "confirmed");
    assert_eq!(now["version"], stream["version"]);

    // Before it existed.
    let first =
        chrono::DateTime::parse_from_rfc3339(events[0]["recorded_at"].as_str().unwrap()).unwrap();
    let before = (first - chrono::Duration::seconds(1)).to_rfc3339();
    let token = app.admin_token().await;
    let path = format!(
        "/v1/admin/streams/order/{order_id}/state?as_of={}",
        urlencode(&before)
    );
    assert_problem(
        app.request(Method::GET, &path, Some(&token), None).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let first_position = events[0]["position"].as_i64().unwrap();
    let path = format!(
        "/v1/admin/streams/order/{order_id}/state?as_of={}",
        first_position - 1
    );
    assert_problem(
        app.request(Method::GET, &path, Some(&token), None).await,
        StatusCode::NOT_FOUND,
    )
    .await;

    // Bad input.
    for bad in ["yesterday", "-3", "2026-13-01T00:00:00Z"] {
        let path = format!("/v1/admin/streams/order/{order_id}/state?as_of={bad}");
        let response = app.request(Method::GET, &path, Some(&token), None).await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    for path in [
        format!("/v1/admin/streams/spaceship/{order_id}/state"),
        format!("/v1/admin/streams/order/{}/state", Uuid::new_v4()),
    ] {
        let response = app.request(Method::GET, &path, Some(&token), None).await;
        assert_problem(response, StatusCode::NOT_FOUND).await;
    }
}

/// Percent-encodes what a query value must not hold raw (`+`, `:`).
fn urlencode(text: &str) -> String {
    text.replace('%', "%25")
        .replace('+', "%2B")
        .replace(':', "%3A")
}

#[tokio::test]
async fn a_stream_and_the_store_are_read_page_by_page_with_metadata() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "JUG", 900, 5).await;
    for _ in 0..4 {
        let response = app
            .post(
                "/v1/inventory/JUG/restock",
                Some(&seller),
                json!({"quantity": 1}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let expected = app.stream("inventory", "JUG").await;
    assert!(expected.len() >= 5, "{expected:?}");

    let mut seen = Vec::new();
    let mut path = "/v1/admin/streams/inventory/JUG?limit=2".to_owned();
    loop {
        let page = app.admin_get(&path).await;
        assert_eq!(page["aggregate_type"], "inventory");
        assert_eq!(page["version"], expected.len() as i64);
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        for item in items {
            assert!(item["metadata"]["correlation_id"].is_string(), "{item}");
            assert!(
                item["payload"].is_object() && item["position"].is_i64(),
                "{item}"
            );
            seen.push((
                item["sequence"].as_i64().unwrap(),
                item["event_type"].as_str().unwrap().to_owned(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                path = format!("/v1/admin/streams/inventory/JUG?limit=2&cursor={cursor}")
            }
            None => break,
        }
    }
    let sequences: Vec<i64> = seen.iter().map(|(s, _)| *s).collect();
    assert_eq!(sequences, (1..=expected.len() as i64).collect::<Vec<_>>());
    assert_eq!(
        seen.into_iter().map(|(_, t)| t).collect::<Vec<_>>(),
        expected
    );

    // The store in position order, one aggregate type, page by page. Only events of
    // transactions older than every running one are shown, and the horizon is the whole
    // cluster's (other tests' transactions too): the last ones may take a moment.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let positions = loop {
        let mut positions = Vec::new();
        let mut path = "/v1/admin/events?aggregate_type=inventory&limit=3".to_owned();
        loop {
            let page = app.admin_get(&path).await;
            for item in page["items"].as_array().unwrap() {
                assert_eq!(item["aggregate_type"], "inventory");
                assert!(item["metadata"].is_object());
                positions.push(item["position"].as_i64().unwrap());
            }
            match page["next_cursor"].as_str() {
                Some(cursor) => {
                    path =
                        format!("/v1/admin/events?aggregate_type=inventory&limit=3&cursor={cursor}")
                }
                None => break,
            }
        }
        if positions.len() == expected.len() {
            break positions;
        }
        assert!(tokio::time::Instant::now() < deadline, "{positions:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    let after = app
        .admin_get(&format!("/v1/admin/events?after={}", positions[2]))
        .await;
    assert!(after["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["position"].as_i64().unwrap() > positions[2]));

    // A password hash never leaves.
    let accounts = app
        .admin_get("/v1/admin/events?aggregate_type=account&limit=100")
        .await;
    assert!(!accounts.to_string().contains("$argon2"), "{accounts}");

    let token = app.admin_token().await;
    for (path, status) in [
        (
            "/v1/admin/streams/inventory/JUG?limit=101",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/admin/streams/inventory/JUG?limit=0",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/admin/streams/inventory/JUG?cursor=not-a-cursor",
            StatusCode::BAD_REQUEST,
        ),
        ("/v1/admin/streams/inventory/NOPE", StatusCode::NOT_FOUND),
        ("/v1/admin/streams/spaceship/JUG", StatusCode::NOT_FOUND),
        ("/v1/admin/events?after=x", StatusCode::BAD_REQUEST),
        (
            "/v1/admin/events?aggregate_type=spaceship",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let response = app.request(Method::GET, path, Some(&token), None).await;
        assert_problem(response, status).await;
    }
}

/// Waits until `projection` has parked `count` events: the page of them.
async fn parked(app: &TestApp, projection: &str, count: usize) -> Vec<Value> {
    app.admin_poll(
        &format!("/v1/admin/dead-letters?projection={projection}"),
        "parking",
        |page| page["items"].as_array().unwrap().len() >= count,
    )
    .await["items"]
        .as_array()
        .unwrap()
        .clone()
}

async fn product_status(app: &TestApp, id: &str) -> StatusCode {
    app.request(Method::GET, &format!("/v1/products/{id}"), None, None)
        .await
        .status()
}

#[tokio::test]
async fn a_dead_letter_applies_once_its_cause_is_fixed() {
    let app = spawn_app().await;
    // The catalog refuses these products until the constraint goes.
    sqlx::query("ALTER TABLE rm_products ADD CONSTRAINT test_refuse_broken CHECK (sku NOT LIKE 'BROKEN%') NOT VALID")
        .execute(&app.pool)
        .await
        .unwrap();
    let (_, seller) = app.account("seller").await;
    let first = app.product(&seller, "BROKEN-1", 500, 0).await;
    let second = app.product(&seller, "BROKEN-2", 500, 0).await;

    let letters = parked(&app, "catalog", 2).await;
    assert_eq!(letters.len(), 2);
    let letter = &letters[0];
    assert_eq!(letter["aggregate_type"], "product");
    assert_eq!(letter["aggregate_id"], first.to_string());
    assert!(
        letter["error"]
            .as_str()
            .unwrap()
            .contains("test_refuse_broken"),
        "{letter}"
    );
    assert!(letter["retried_at"].is_null());
    for field in [
        "dead_letter_id",
        "sequence",
        "position",
        "event_type",
        "attempts",
        "parked_at",
    ] {
        assert!(!letter[field].is_null(), "{field}: {letter}");
    }
    let id = letter["dead_letter_id"].as_i64().unwrap();
    let detail = app.admin_get(&format!("/v1/admin/dead-letters/{id}")).await;
    assert!(
        detail["payload"].to_string().contains("BROKEN-1"),
        "{detail}"
    );
    assert!(detail["metadata"].is_object() && detail["event_version"].is_string());
    assert_eq!(
        product_status(&app, &first.to_string()).await,
        StatusCode::NOT_FOUND
    );

    // Still failing: 409 with the error.
    let token = app.admin_token().await;
    let response = app
        .request(
            Method::POST,
            &format!("/v1/admin/dead-letters/{id}/retry"),
            Some(&token),
            None,
        )
        .await;
    let problem = assert_problem(response, StatusCode::CONFLICT).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("test_refuse_broken"));

    sqlx::query("ALTER TABLE rm_products DROP CONSTRAINT test_refuse_broken")
        .execute(&app.pool)
        .await
        .unwrap();
    let retried = app
        .admin(
            Method::POST,
            &format!("/v1/admin/dead-letters/{id}/retry"),
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(retried, json!({"dead_letter_id": id, "outcome": "applied"}));
    assert_eq!(
        product_status(&app, &first.to_string()).await,
        StatusCode::OK
    );
    assert_eq!(
        product_status(&app, &second.to_string()).await,
        StatusCode::NOT_FOUND
    );
    let response = app
        .request(
            Method::POST,
            &format!("/v1/admin/dead-letters/{id}/retry"),
            Some(&token),
            None,
        )
        .await;
    assert_problem(response, StatusCode::NOT_FOUND).await;

    // Retry the rest.
    let all = app
        .admin(
            Method::POST,
            "/v1/admin/dead-letters/retry",
            Some(json!({"projection": "catalog"})),
            StatusCode::OK,
        )
        .await;
    assert_eq!(all, json!({"applied": 1, "failed": 0, "failed_ids": []}));
    assert_eq!(
        product_status(&app, &second.to_string()).await,
        StatusCode::OK
    );

    let parked_now = app.admin_get("/v1/admin/dead-letters").await;
    assert_eq!(parked_now["items"], json!([]));
    let every = app
        .admin_get("/v1/admin/dead-letters?include_retried=true&limit=1")
        .await;
    assert_eq!(every["items"].as_array().unwrap().len(), 1);
    assert!(every["items"][0]["retried_at"].is_string());
    let cursor = every["next_cursor"].as_str().expect("a second page");
    let rest = app
        .admin_get(&format!(
            "/v1/admin/dead-letters?include_retried=true&limit=1&cursor={cursor}"
        ))
        .await;
    assert_eq!(rest["items"][0]["aggregate_id"], second.to_string());

    for (method, path, status) in [
        (
            Method::GET,
            "/v1/admin/dead-letters/999999",
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/v1/admin/dead-letters/abc",
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/admin/dead-letters?projection=nope",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/admin/dead-letters/999999/retry",
            StatusCode::NOT_FOUND,
        ),
    ] {
        let response = app.request(method, path, Some(&token), None).await;
        assert_problem(response, status).await;
    }
    let projections = app.admin_get("/v1/admin/projections").await;
    let catalog = projections["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "catalog")
        .unwrap()
        .clone();
    assert_eq!(catalog["dead_letters"], 0);
}

#[tokio::test]
async fn a_saga_stuck_on_a_parked_event_completes_once_retried() {
    let app = spawn_app().await;
    let (buyer, order_id) = an_order(&app, "MUG").await;
    app.wait_for_order(order_id, &buyer, &["confirmed"]).await;
    app.wait_for_saga(order_id).await;
    // The saga trigger cannot wake the saga of a cancelled order until the constraint goes.
    sqlx::query("ALTER TABLE saga_deadlines ADD CONSTRAINT test_refuse_cancelled CHECK (reason <> 'order_cancelled') NOT VALID")
        .execute(&app.pool)
        .await
        .unwrap();
    let cancelled = app
        .post(
            &format!("/v1/orders/{order_id}/cancel"),
            Some(&buyer),
            json!({}),
        )
        .await;
    assert_eq!(cancelled.status(), StatusCode::OK, "cancelling the order");
    let stuck = app
        .admin_poll(
            "/v1/admin/sagas?stuck=true",
            "the saga getting stuck",
            |page| {
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["saga_id"] == order_id.to_string())
            },
        )
        .await;
    let saga = &stuck["items"][0];
    assert_eq!(saga["saga_id"], order_id.to_string());
    assert_eq!(saga["stuck"], true);
    assert_eq!(saga["stuck_reasons"], json!(["parked_event"]));
    assert_eq!(saga["state"], "confirmed");
    assert!(saga["dead_letter_id"].is_i64());
    let detail = app.admin_get(&format!("/v1/admin/sagas/{order_id}")).await;
    assert_eq!(detail["order_id"], order_id.to_string());
    assert_eq!(detail["saga"]["refunded"], false, "{detail}");

    sqlx::query("ALTER TABLE saga_deadlines DROP CONSTRAINT test_refuse_cancelled")
        .execute(&app.pool)
        .await
        .unwrap();
    let retried = app
        .admin(
            Method::POST,
            &format!("/v1/admin/sagas/{order_id}/retry"),
            None,
            StatusCode::ACCEPTED,
        )
        .await;
    assert_eq!(retried["saga_id"], order_id.to_string());
    assert!(retried["due_at"].is_string());
    app.wait_for_saga(order_id).await;

    let detail = app.admin_get(&format!("/v1/admin/sagas/{order_id}")).await;
    assert_eq!(detail["state"], "cancelled", "{detail}");
    assert_eq!(detail["stuck"], false);
    assert_eq!(detail["saga"]["refunded"], true);
    let stuck = app.admin_get("/v1/admin/sagas?stuck=true").await;
    assert_eq!(stuck["items"], json!([]));
    let ended = app
        .admin_get(&format!(
            "/v1/admin/sagas?state={}",
            detail["state"].as_str().unwrap()
        ))
        .await;
    assert_eq!(ended["items"][0]["saga_id"], order_id.to_string());
    // Its parked event was applied by the retry.
    let letters = app
        .admin_get("/v1/admin/dead-letters?projection=saga_triggers")
        .await;
    assert_eq!(letters["items"], json!([]));

    let token = app.admin_token().await;
    for (method, path, status) in [
        (
            Method::POST,
            format!("/v1/admin/sagas/{}/retry", Uuid::new_v4()),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            format!("/v1/admin/sagas/{}", Uuid::new_v4()),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/v1/admin/sagas/not-a-uuid".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/admin/sagas?state=sleeping".to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::GET,
            "/v1/admin/sagas?stuck=maybe".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let response = app.request(method, &path, Some(&token), None).await;
        assert_problem(response, status).await;
    }
}

#[tokio::test]
async fn sagas_past_their_deadline_or_lease_are_listed_first_and_woken_by_a_retry() {
    // No worker runs: nothing moves the rows the test writes.
    let app = spawn_app_with(|config| config.saga_workers = 0).await;
    let (lapsed, late, fine) = (Uuid::from_u128(3), Uuid::from_u128(2), Uuid::from_u128(1));
    sqlx::query(
        "INSERT INTO saga_deadlines (saga_id, due_at, reason, locked_by, locked_until) VALUES \
         ($1, now() - interval '5 minutes', 'order_placed', 'gone-worker', now() - interval '1 minute'), \
         ($2, now() - interval '5 minutes', 'order_placed', NULL, NULL), \
         ($3, now() + interval '1 hour', 'payment_timeout', NULL, NULL)",
    )
    .bind(lapsed)
    .bind(late)
    .bind(fine)
    .execute(&app.pool)
    .await
    .unwrap();

    let all = app.admin_get("/v1/admin/sagas?limit=2").await;
    let items = all["items"].as_array().unwrap();
    assert_eq!(items[0]["saga_id"], late.to_string());
    assert_eq!(items[0]["stuck_reasons"], json!(["past_deadline"]));
    assert_eq!(items[1]["saga_id"], lapsed.to_string());
    assert_eq!(items[1]["stuck_reasons"], json!(["lease_lost"]));
    let cursor = all["next_cursor"].as_str().expect("a second page");
    let rest = app
        .admin_get(&format!("/v1/admin/sagas?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(rest["items"][0]["saga_id"], fine.to_string());
    assert_eq!(rest["items"][0]["stuck"], false);
    assert!(rest["next_cursor"].is_null());
    let calm = app.admin_get("/v1/admin/sagas?stuck=false").await;
    assert_eq!(calm["items"].as_array().unwrap().len(), 1);

    let retried = app
        .admin(
            Method::POST,
            &format!("/v1/admin/sagas/{late}/retry"),
            None,
            StatusCode::ACCEPTED,
        )
        .await;
    let due = chrono::DateTime::parse_from_rfc3339(retried["due_at"].as_str().unwrap()).unwrap();
    assert!(due <= chrono::Utc::now());
    let generation: i64 =
        sqlx::query_scalar("SELECT generation FROM saga_deadlines WHERE saga_id = $1")
            .bind(late)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(generation, 2, "a retry is a wake-up");
}

#[tokio::test]
async fn republishing_from_the_first_position_changes_no_read_model() {
    let app = spawn_app().await;
    let (buyer, order_id) = an_order(&app, "MUG").await;
    app.wait_for_order(order_id, &buyer, &["confirmed"]).await;
    app.wait_for_saga(order_id).await;
    app.projections_settled().await;
    let before = app.read_models().await;

    let token = app.admin_token().await;
    let response: Response = app
        .post(
            "/v1/admin/events/republish",
            Some(&token),
            json!({"from_position": 1}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let started: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!(
            "/v1/admin/republishes/{}",
            started["republish_id"].as_str().unwrap()
        )
    );
    assert_eq!(started["from_position"], 1);
    let done = app
        .admin_poll(&location, "the republish", |p| p["state"] != "running")
        .await;
    assert_eq!(done["state"], "completed", "{done}");
    assert!(done["events_total"].as_i64().unwrap() > 0);
    assert_eq!(done["events_done"], done["events_total"]);
    assert!(done["finished_at"].is_string() && done["eta_seconds"].is_null());

    tokio::time::sleep(Duration::from_secs(1)).await;
    app.projections_settled().await;
    assert_eq!(app.read_models().await, before);

    for (body, status) in [
        (
            json!({"from_position": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"from_position": "one"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let response = app
            .post("/v1/admin/events/republish", Some(&token), body)
            .await;
        assert_problem(response, status).await;
    }
    let response = app
        .request(
            Method::GET,
            &format!("/v1/admin/republishes/{}", Uuid::new_v4()),
            Some(&token),
            None,
        )
        .await;
    assert_problem(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn projections_are_listed_and_rebuilds_started_watched_and_cancelled() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 1250, 5).await;
    app.projections_settled().await;

    let projections = app.admin_get("/v1/admin/projections").await;
    let items = projections["items"].as_array().unwrap();
    let names: Vec<&str> = items.iter().map(|p| p["name"].as_str().unwrap()).collect();
    for name in [
        "carts",
        "catalog",
        "inventory",
        "notifications",
        "orders",
        "payments",
        "recommendations",
        "reviews",
        "saga_triggers",
        "webhooks",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    for item in items {
        assert!(
            item["position"].is_i64() && item["state"].is_string(),
            "{item}"
        );
        assert!(
            item["lag_seconds"].is_number() && item["pending"].is_i64(),
            "{item}"
        );
        // Rebuilding what starts sagas or sends webhooks would do it all again.
        let drives_effects =
            ["saga_triggers", "webhooks"].contains(&item["name"].as_str().unwrap());
        assert_eq!(item["rebuildable"], !drives_effects);
        assert!(item["rebuild"].is_null());
    }
    let catalog = items.iter().find(|p| p["name"] == "catalog").unwrap();
    assert!(catalog["position"].as_i64().unwrap() > 0);
    assert_eq!(catalog["state"], "running");

    let token = app.admin_token().await;
    // The rebuild stays in its first step while the routes are checked.
    let holder = app.hold_rebuild("orders").await;
    let response = app
        .request(
            Method::POST,
            "/v1/admin/projections/orders/rebuild",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let started: Value = response.json().await.unwrap();
    let rebuild_id = started["rebuild_id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/admin/rebuilds/{rebuild_id}"));
    assert_eq!(started["projection"], "orders");
    for field in [
        "state",
        "events_done",
        "events_total",
        "events_per_second",
        "requested_at",
    ] {
        assert!(!started[field].is_null(), "{field}: {started}");
    }

    let response = app
        .request(
            Method::POST,
            "/v1/admin/projections/orders/rebuild",
            Some(&token),
            None,
        )
        .await;
    let problem = assert_problem(response, StatusCode::CONFLICT).await;
    assert_eq!(problem["rebuild_id"], rebuild_id);
    for (path, status) in [
        ("/v1/admin/projections/nope/rebuild", StatusCode::NOT_FOUND),
        (
            "/v1/admin/projections/saga_triggers/rebuild",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let response = app.request(Method::POST, path, Some(&token), None).await;
        assert_problem(response, status).await;
    }

    let progress = app.admin_get(&location).await;
    assert_eq!(progress["rebuild_id"], rebuild_id);
    let listed = app.admin_get("/v1/admin/rebuilds").await;
    assert_eq!(listed["items"][0]["rebuild_id"], rebuild_id);
    let projections = app.admin_get("/v1/admin/projections").await;
    let orders = projections["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "orders")
        .unwrap()
        .clone();
    assert_eq!(orders["rebuild"]["rebuild_id"], rebuild_id);

    let cancelled = app
        .admin(
            Method::POST,
            &format!("{location}/cancel"),
            None,
            StatusCode::ACCEPTED,
        )
        .await;
    assert_eq!(cancelled["cancel_requested"], true);
    holder.commit().await.unwrap();
    // A rebuild under way stops at its next step; a pending one at once.
    let ended = app
        .admin_poll(&location, "the cancellation", |p| {
            ["cancelled", "completed", "failed"].contains(&p["state"].as_str().unwrap())
        })
        .await;
    assert_eq!(ended["state"], "cancelled", "{ended}");
    assert!(ended["finished_at"].is_string());
    let response = app
        .request(
            Method::POST,
            &format!("{location}/cancel"),
            Some(&token),
            None,
        )
        .await;
    assert_problem(response, StatusCode::CONFLICT).await;
    for (method, path, status) in [
        (
            Method::POST,
            format!("/v1/admin/rebuilds/{}/cancel", Uuid::new_v4()),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            format!("/v1/admin/rebuilds/{}", Uuid::new_v4()),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/v1/admin/rebuilds/nope".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/admin/rebuilds?limit=500".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let response = app.request(method, &path, Some(&token), None).await;
        assert_problem(response, status).await;
    }
}

/// A projection run as partitions shows each partition's watermark to operators, and its own
/// horizon moves once both have one.
#[tokio::test]
async fn the_projections_list_shows_each_partition_of_a_partitioned_projection() {
    let app = spawn_app_with(|config| {
        config.projection_partitions =
            commerce_projections::Partitioning::parse("orders=2").unwrap();
    })
    .await;
    let (buyer, order_id) = an_order(&app, "MUG").await;
    app.wait_for_order(order_id, &buyer, &["confirmed"]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let projections = app.admin_get("/v1/admin/projections").await;
        let items = projections["items"].as_array().unwrap();
        let orders = items.iter().find(|p| p["name"] == "orders").unwrap();
        let partitions = orders["partitions"].as_array().unwrap();
        let catalog = items.iter().find(|p| p["name"] == "catalog").unwrap();
        assert_eq!(catalog["partitions"], json!([]), "catalog runs whole");
        let reported: Vec<(i64, i64)> = partitions
            .iter()
            .map(|p| (p["partition"].as_i64().unwrap(), p["of"].as_i64().unwrap()))
            .collect();
        let horizons: Vec<i64> = partitions
            .iter()
            .map(|p| p["horizon"].as_i64().unwrap())
            .collect();
        // Only the partitions move the projection's horizon: once it has moved, both reported.
        let moved = orders["horizon"].as_i64().unwrap() > 0;
        if reported == [(0, 2), (1, 2)] && horizons.iter().all(|h| *h > 0) && moved {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the partitions did not report: {orders}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

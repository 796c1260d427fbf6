//! The lookups: the caller's account (`GET /v1/me`), an account by id (the `Location` of a
//! registration; its holder and admins only), a product by any of its SKUs, the seller's own
//! products (listed and delisted), and relisting a delisted product.

use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_problem, spawn_app, TestApp, PASSWORD};

/// The position a command response says its events reached.
fn position(response: &Response) -> i64 {
    response.headers()["x-event-position"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Registers Ada as a buyer: her `Location`, the registration's position and a token.
async fn register_ada(app: &TestApp) -> (String, i64, String) {
    let email = format!("ada-{}@example.com", Uuid::new_v4().simple());
    let response = app
        .post(
            "/v1/accounts",
            None,
            json!({"email": email, "password": PASSWORD, "name": "Ada Lovelace", "role": "buyer"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let at = position(&response);
    (location, at, app.token(&email, PASSWORD).await)
}

#[tokio::test]
async fn the_location_of_a_registration_resolves_for_that_account_and_admins_only() {
    let app = spawn_app().await;
    let (location, at, ada) = register_ada(&app).await;
    let id = location.strip_prefix("/v1/accounts/").unwrap();

    let account = app.read_json(&location, Some(&ada), at).await;
    assert_eq!(account["account_id"], id);
    assert!(account["email"].as_str().unwrap().starts_with("ada-"));
    assert_eq!(account["name"], "Ada Lovelace");
    assert_eq!(account["role"], "buyer");
    assert!(account.get("forgotten_at").is_none(), "{account}");
    // GET /v1/me is the same account.
    assert_eq!(app.read_json("/v1/me", Some(&ada), at).await, account);
    // An admin sees it too.
    let admin = app.admin_token().await;
    assert_eq!(app.read_json(&location, Some(&admin), at).await, account);

    // Another account gets what an unknown id gets, so that ids are not probed; anonymous, 401.
    let (_, other) = app.account("seller").await;
    let theirs = app.read(&location, Some(&other), at).await;
    let unknown = app
        .read(
            &format!("/v1/accounts/{}", Uuid::now_v7()),
            Some(&other),
            at,
        )
        .await;
    let theirs = assert_problem(theirs, StatusCode::NOT_FOUND).await;
    assert_problem(unknown, StatusCode::NOT_FOUND).await;
    assert!(!theirs.to_string().contains("Ada"), "{theirs}");
    assert_problem(
        app.read(&location, None, at).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_problem(app.read("/v1/me", None, at).await, StatusCode::UNAUTHORIZED).await;

    // The read model keeps the e-mail and the name sealed: the route opened them.
    let row: Value =
        sqlx::query_scalar("SELECT to_jsonb(a) FROM rm_accounts a WHERE account_id = $1")
            .bind(id.parse::<Uuid>().unwrap())
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(
        !row.to_string().contains("Ada") && !row.to_string().contains("ada-"),
        "{row}"
    );
    assert_eq!(row["name"]["sealed_for"], id);
}

#[tokio::test]
async fn a_forgotten_account_reads_forgotten_to_an_admin() {
    let app = spawn_app().await;
    let (location, _, ada) = register_ada(&app).await;
    let response = app
        .request(Method::DELETE, "/v1/me", Some(&ada), None)
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let at = position(&response);

    let admin = app.admin_token().await;
    let account = app.read_json(&location, Some(&admin), at).await;
    assert_eq!(account["email"], "forgotten");
    assert_eq!(account["name"], "forgotten");
    assert_eq!(account["role"], "buyer");
    assert!(account["forgotten_at"].is_string(), "{account}");
    // Her token died with her account.
    assert_problem(
        app.read("/v1/me", Some(&ada), at).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn a_product_is_found_by_its_own_sku_and_by_a_variants() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    let response = app
        .post(
            "/v1/products",
            Some(&seller),
            json!({"sku": "LAMP", "name": "Lamp", "price": {"amount": 4500, "currency": "EUR"},
                   "category": "home/lighting",
                   "variants": [{"sku": "LAMP-BRASS", "attributes": {"finish": "brass"}}]}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let at = position(&response);
    let id = response.json::<Value>().await.unwrap()["product_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let product = app.read_json(&format!("/v1/products/{id}"), None, at).await;
    for sku in ["LAMP", "LAMP-BRASS"] {
        let found = app
            .read_json(&format!("/v1/products/by-sku/{sku}"), None, at)
            .await;
        assert_eq!(found, product, "by SKU {sku}");
    }
    assert_eq!(product["variants"][0]["sku"], "LAMP-BRASS");
    let unknown = app.read("/v1/products/by-sku/LAMP-GOLD", None, at).await;
    assert_problem(unknown, StatusCode::NOT_FOUND).await;
    // A SKU is matched whole: a prefix of one finds nothing.
    let prefix = app.read("/v1/products/by-sku/LAM", None, at).await;
    assert_problem(prefix, StatusCode::NOT_FOUND).await;
}

/// Creates a product as `seller`: its id and the position of its creation.
async fn create(app: &TestApp, seller: &str, sku: &str, name: &str) -> (String, i64) {
    let response = app
        .post(
            "/v1/products",
            Some(seller),
            json!({"sku": sku, "name": name, "price": {"amount": 1000, "currency": "EUR"},
                   "category": "test/things"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let at = position(&response);
    let id = response.json::<Value>().await.unwrap()["product_id"]
        .as_str()
        .unwrap()
        .to_owned();
    (id, at)
}

async fn delist(app: &TestApp, seller: &str, id: &str) -> i64 {
    let path = format!("/v1/products/{id}");
    let response = app.request(Method::DELETE, &path, Some(seller), None).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    position(&response)
}

#[tokio::test]
async fn a_seller_lists_its_own_products_listed_and_delisted_newest_first_by_pages() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    let (_, rival) = app.account("seller").await;
    let (first, _) = create(&app, &seller, "OWN-1", "First").await;
    let (second, _) = create(&app, &seller, "OWN-2", "Second").await;
    create(&app, &rival, "RIVAL-1", "Rival's").await;
    let (third, _) = create(&app, &seller, "OWN-3", "Third").await;
    let at = delist(&app, &seller, &second).await;

    let page = app
        .read_json("/v1/seller/products?limit=2", Some(&seller), at)
        .await;
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["product_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [third.as_str(), second.as_str()]);
    assert_eq!(page["items"][0]["listed"], true);
    assert_eq!(page["items"][1]["listed"], false);
    assert_eq!(page["items"][1]["sku"], "OWN-2");
    assert_eq!(
        page["items"][1]["price"],
        json!({"amount": 1000, "currency": "EUR"})
    );
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = app
        .read_json(
            &format!("/v1/seller/products?limit=2&cursor={cursor}"),
            Some(&seller),
            at,
        )
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest["items"][0]["product_id"], first.as_str());
    assert!(rest["next_cursor"].is_null());

    // The rival sees only its own; a buyer has no products; anonymous must sign in.
    let theirs = app.read_json("/v1/seller/products", Some(&rival), at).await;
    assert_eq!(theirs["items"].as_array().unwrap().len(), 1);
    assert_eq!(theirs["items"][0]["sku"], "RIVAL-1");
    let (_, buyer) = app.account("buyer").await;
    let as_buyer = app.read("/v1/seller/products", Some(&buyer), at).await;
    assert_problem(as_buyer, StatusCode::FORBIDDEN).await;
    let anonymous = app.read("/v1/seller/products", None, at).await;
    assert_problem(anonymous, StatusCode::UNAUTHORIZED).await;
    let bad = app
        .read("/v1/seller/products?cursor=not-a-cursor", Some(&seller), at)
        .await;
    assert_problem(bad, StatusCode::BAD_REQUEST).await;
}

/// The product ids a catalog search for `q` finds.
async fn search(app: &TestApp, q: &str, at: i64) -> Vec<String> {
    app.read_json(&format!("/v1/products?q={q}"), None, at)
        .await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["product_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_relisted_product_is_on_sale_and_searchable_again() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    let (id, at) = create(&app, &seller, "LANTERN", "Zanzibar lantern").await;
    assert_eq!(
        search(&app, "zanzibar", at).await,
        std::slice::from_ref(&id)
    );
    let at = delist(&app, &seller, &id).await;
    assert!(search(&app, "zanzibar", at).await.is_empty());

    let path = format!("/v1/products/{id}");
    // A delisted product's fields do not change unless it is relisted.
    let rename = json!({"name": "Zanzibar lamp"});
    let response = app
        .request(Method::PATCH, &path, Some(&seller), Some(rename))
        .await;
    assert_problem(response, StatusCode::CONFLICT).await;
    // Only its seller relists it.
    let (_, rival) = app.account("seller").await;
    let relist = json!({"listed": true});
    let response = app
        .request(Method::PATCH, &path, Some(&rival), Some(relist.clone()))
        .await;
    assert_problem(response, StatusCode::FORBIDDEN).await;

    let response = app
        .request(Method::PATCH, &path, Some(&seller), Some(relist.clone()))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], "\"3\"");
    let at = position(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["listed"], true);
    assert_eq!(
        app.stream("product", &id).await,
        ["ProductCreated", "ProductDelisted", "ProductRelisted"]
    );
    assert_eq!(
        search(&app, "zanzibar", at).await,
        std::slice::from_ref(&id)
    );
    let product = app.read_json(&path, None, at).await;
    assert_eq!(product["listed"], true);
    let mine = app
        .read_json("/v1/seller/products", Some(&seller), at)
        .await;
    assert_eq!(mine["items"][0]["listed"], true);

    // Relisting what is listed changes nothing.
    let response = app
        .request(Method::PATCH, &path, Some(&seller), Some(relist))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], "\"3\"");
    assert_eq!(app.stream("product", &id).await.len(), 3);
}

//! Catalog search: full text weighted by name, typos, filters, sorting and pagination.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

async fn catalog(app: &TestApp) -> (String, i64) {
    let (_, seller) = app.account("seller").await;
    let products = [
        (
            "HOODIE",
            "Grey zip hoodie",
            "Heavyweight fleece with a full zip",
            4999,
            "apparel/hoodies",
            json!({"colour": "grey", "size": "M"}),
        ),
        (
            "HOODIE-B",
            "Black hoodie",
            "Heavy fleece",
            5499,
            "apparel/hoodies",
            json!({"colour": "black", "size": "L"}),
        ),
        (
            "TEE",
            "Classic cotton t-shirt",
            "A soft shirt to wear under a hoodie",
            1999,
            "apparel/t-shirts",
            json!({"colour": "white", "size": "M"}),
        ),
        (
            "MUG",
            "Enamel camping mug",
            "Light and unbreakable",
            1250,
            "home/kitchen",
            json!({"capacity_ml": 350}),
        ),
        (
            "COFFEE",
            "Ethiopian coffee",
            "Floral single origin beans",
            1490,
            "food/coffee",
            json!({"roast": "light"}),
        ),
    ];
    for (sku, name, description, price, category, attributes) in products {
        let response = app
            .post("/v1/products", Some(&seller), json!({"sku": sku, "name": name, "description": description,
                "price": {"amount": price, "currency": "EUR"}, "category": category, "attributes": attributes}))
            .await;
        assert_eq!(response.status(), 201);
    }
    (seller, app.last_position().await)
}

fn skus(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sku"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn exact_words_rank_name_matches_above_description_matches() {
    let app = spawn_app().await;
    let (_, at) = catalog(&app).await;
    let page = app.read_json("/v1/products?q=hoodie", None, at).await;
    let found = skus(&page);
    assert_eq!(found.len(), 3, "{found:?}");
    assert_eq!(
        found.last().unwrap(),
        "TEE",
        "the description match ranks last: {found:?}"
    );
    assert!(page["items"][0]["price"]["amount"].is_i64());
    assert!(page["items"][0]["product_id"].is_string());
}

#[tokio::test]
async fn a_misspelt_word_still_finds_the_product() {
    let app = spawn_app().await;
    let (_, at) = catalog(&app).await;
    assert_eq!(
        skus(&app.read_json("/v1/products?q=cofee", None, at).await),
        ["COFFEE"]
    );
    assert!(
        skus(&app.read_json("/v1/products?q=hodie", None, at).await).contains(&"HOODIE".to_owned())
    );
}

#[tokio::test]
async fn category_price_and_attribute_filters_narrow_the_results() {
    let app = spawn_app().await;
    let (_, at) = catalog(&app).await;
    let mut apparel = skus(
        &app.read_json("/v1/products?category=apparel", None, at)
            .await,
    );
    apparel.sort();
    assert_eq!(apparel, ["HOODIE", "HOODIE-B", "TEE"]);
    let mut hoodies = skus(
        &app.read_json(
            "/v1/products?category=apparel/hoodies&sort=price_asc",
            None,
            at,
        )
        .await,
    );
    assert_eq!(hoodies, ["HOODIE", "HOODIE-B"]);
    hoodies = skus(
        &app.read_json(
            "/v1/products?min_price=1300&max_price=5000&sort=price_asc",
            None,
            at,
        )
        .await,
    );
    assert_eq!(hoodies, ["COFFEE", "TEE", "HOODIE"]);
    assert_eq!(
        skus(
            &app.read_json("/v1/products?attr.colour=grey", None, at)
                .await
        ),
        ["HOODIE"]
    );
    assert_eq!(
        skus(
            &app.read_json(
                "/v1/products?attr.size=M&category=apparel&sort=price_desc",
                None,
                at
            )
            .await
        ),
        ["HOODIE", "TEE"]
    );
    assert_eq!(
        skus(
            &app.read_json("/v1/products?attr.capacity_ml=350", None, at)
                .await
        ),
        ["MUG"]
    );
}

#[tokio::test]
async fn delisted_products_leave_the_results() {
    let app = spawn_app().await;
    let (seller, at) = catalog(&app).await;
    let page = app.read_json("/v1/products?q=mug", None, at).await;
    let id = page["items"][0]["product_id"].as_str().unwrap().to_owned();
    let response = app
        .request(
            reqwest::Method::DELETE,
            &format!("/v1/products/{id}"),
            Some(&seller),
            None,
        )
        .await;
    let at: i64 = response.headers()["x-event-position"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(skus(&app.read_json("/v1/products?q=mug", None, at).await).is_empty());
}

#[tokio::test]
async fn pages_of_ten_walk_twenty_five_products_exactly_once() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    for i in 0..25 {
        let price = 1000 + (i % 5) * 100; // ties in price, broken by id
        app.post("/v1/products", Some(&seller), json!({"sku": format!("WIDGET-{i:02}"), "name": format!("Widget number {i}"),
            "description": "A widget", "price": {"amount": price, "currency": "EUR"}, "category": "widgets"}))
            .await;
    }
    let at = app.last_position().await;
    for query in [
        "category=widgets",
        "category=widgets&sort=price_asc",
        "category=widgets&sort=price_desc",
        "q=widget",
        "category=widgets&sort=name",
    ] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/products?{query}&limit=10&cursor={c}"),
                None => format!("/v1/products?{query}&limit=10"),
            };
            let page = app.read_json(&path, None, at).await;
            seen.extend(skus(&page));
            pages += 1;
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(pages, 3, "{query}");
        let total = seen.len();
        seen.sort();
        seen.dedup();
        assert_eq!(
            (total, seen.len()),
            (25, 25),
            "{query}: every product exactly once"
        );
    }
}

#[tokio::test]
async fn the_limit_is_capped_at_one_hundred() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    let lines: Vec<String> = (0..105)
        .map(|i| json!({"sku": format!("BULK-{i}"), "name": format!("Bulk {i}"), "price": {"amount": 1, "currency": "EUR"}, "category": "bulk"}).to_string())
        .collect();
    app.client
        .post(format!("{}/v1/products/import", app.address))
        .bearer_auth(&seller)
        .body(lines.join("\n"))
        .send()
        .await
        .unwrap();
    let at = app.last_position().await;
    let page = app
        .read_json("/v1/products?category=bulk&limit=500", None, at)
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 100);
    assert!(page["next_cursor"].is_string());
}

//! A small demo catalog, loaded through the engine's own API so it obeys every rule.
//! Loading twice is harmless: taken e-mails and SKUs are skipped.

use anyhow::Context;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;

/// The demo seller's sign-in, printed at start so the catalog can be changed.
pub const DEMO_SELLER_EMAIL: &str = "demo-seller@example.com";
pub const DEMO_SELLER_PASSWORD: &str = "demo-seller-password";

fn products() -> Vec<Value> {
    let eur = |amount: i64| json!({ "amount": amount, "currency": "EUR" });
    vec![
        json!({"sku": "TEE-CLASSIC", "name": "Classic cotton t-shirt", "description": "Soft organic cotton, regular fit.",
               "price": eur(1999), "category": "apparel/t-shirts", "attributes": {"material": "cotton", "colour": "white"},
               "variants": [
                   {"sku": "TEE-CLASSIC-S", "attributes": {"size": "S"}},
                   {"sku": "TEE-CLASSIC-M", "attributes": {"size": "M"}},
                   {"sku": "TEE-CLASSIC-L", "price": eur(2199), "attributes": {"size": "L"}}]}),
        json!({"sku": "HOODIE-GREY", "name": "Grey zip hoodie", "description": "Heavyweight fleece with a full zip.",
               "price": eur(4999), "category": "apparel/hoodies", "attributes": {"material": "fleece", "colour": "grey"}}),
        json!({"sku": "MUG-ENAMEL", "name": "Enamel camping mug", "description": "Light, unbreakable, 350 ml.",
               "price": eur(1250), "category": "home/kitchen", "attributes": {"capacity_ml": 350}}),
        json!({"sku": "COFFEE-ETH", "name": "Ethiopian single-origin coffee", "description": "Floral and bright; whole beans, 250 g.",
               "price": eur(1490), "category": "food/coffee", "attributes": {"flavour": "floral", "roast": "light"}}),
        json!({"sku": "LAMP-DESK", "name": "Adjustable desk lamp", "description": "Warm LED light with a dimmer.",
               "price": eur(3900), "category": "home/lighting", "attributes": {"colour": "black", "wattage": 8}}),
    ]
}

async fn call(
    router: &Router,
    method: Method,
    uri: &str,
    token: Option<&str>,
    content_type: &str,
    body: String,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::from(body))?)
        .await?;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// Registers the demo seller, imports the products and stocks every new SKU.
pub async fn load(router: &Router) -> anyhow::Result<()> {
    let account = json!({"email": DEMO_SELLER_EMAIL, "password": DEMO_SELLER_PASSWORD, "name": "Demo Seller", "role": "seller"});
    let (status, _) = call(
        router,
        Method::POST,
        "/v1/accounts",
        None,
        "application/json",
        account.to_string(),
    )
    .await?;
    anyhow::ensure!(
        status == StatusCode::CREATED || status == StatusCode::CONFLICT,
        "registering the demo seller: {status}"
    );
    let credentials = json!({"email": DEMO_SELLER_EMAIL, "password": DEMO_SELLER_PASSWORD});
    let (status, body) = call(
        router,
        Method::POST,
        "/v1/auth/token",
        None,
        "application/json",
        credentials.to_string(),
    )
    .await?;
    anyhow::ensure!(
        status == StatusCode::OK,
        "signing in as the demo seller: {status} (was its password changed?)"
    );
    let token = body["access_token"]
        .as_str()
        .context("the token response has no access_token")?
        .to_owned();

    let products = products();
    let ndjson: String = products.iter().map(|p| format!("{p}\n")).collect();
    let (status, report) = call(
        router,
        Method::POST,
        "/v1/products/import",
        Some(&token),
        "application/x-ndjson",
        ndjson,
    )
    .await?;
    anyhow::ensure!(
        status == StatusCode::OK,
        "importing the demo catalog: {status}"
    );
    let results = report["results"].as_array().cloned().unwrap_or_default();
    for (product, result) in products.iter().zip(results) {
        if result["status"] != 201 {
            continue;
        }
        let variants = product["variants"].as_array().cloned().unwrap_or_default();
        let skus = std::iter::once(product["sku"].clone())
            .chain(variants.iter().map(|v| v["sku"].clone()));
        for sku in skus.filter_map(|s| s.as_str().map(str::to_owned)) {
            let uri = format!("/v1/inventory/{sku}/restock");
            let (status, _) = call(
                router,
                Method::POST,
                &uri,
                Some(&token),
                "application/json",
                json!({"quantity": 100}).to_string(),
            )
            .await?;
            anyhow::ensure!(status == StatusCode::OK, "stocking {sku}: {status}");
        }
    }
    tracing::info!(
        seller = DEMO_SELLER_EMAIL,
        password = "see README",
        "demo catalog loaded"
    );
    Ok(())
}

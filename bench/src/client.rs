//! The HTTP side: keep-alive clients and the few calls every scenario makes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use commerce_domain::{AccountId, Role};
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::engine::Engine;
use crate::load::Status;

/// A keep-alive HTTP client for the engine's API.
#[derive(Clone)]
pub struct Api {
    base: Arc<str>,
    http: reqwest::Client,
}

/// A response read to the end (so its connection goes back to the pool).
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl Answer {
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "a {} response that is not JSON: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// A numeric header, such as `X-Event-Position`.
    pub fn header_i64(&self, name: &str) -> Option<i64> {
        self.headers.get(name)?.to_str().ok()?.parse().ok()
    }

    /// Fails unless the status is `expected`.
    pub fn expect(self, expected: u16, what: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            self.status == expected,
            "{what}: {} {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        Ok(self)
    }
}

impl Api {
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(usize::MAX)
            .pool_idle_timeout(Duration::from_secs(300))
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            base: base.into(),
            http,
        })
    }

    /// A request to `path` (from `/v1/…`), with a bearer token when given.
    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends and reads the whole response.
    pub async fn send(request: RequestBuilder) -> anyhow::Result<Answer> {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// Sends and reads the whole response: only its status.
    pub async fn status(request: RequestBuilder) -> Status {
        let response = request.send().await?;
        let status = response.status().as_u16();
        response.bytes().await?;
        Ok(status)
    }

    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> anyhow::Result<Answer> {
        Self::send(self.request(Method::POST, path, token).json(body)).await
    }
}

/// The checkout body every buyer sends: the sandbox's always-authorising card.
pub fn checkout_body() -> Value {
    json!({"payment_token": "tok_ok", "shipping_address": {
        "name": "Ada Lovelace", "line1": "12 St James's Square", "city": "London",
        "postal_code": "SW1Y 4JH", "country": "GB"}})
}

/// A seller with a catalog, and buyers on demand: what the scenarios share.
pub struct Shop {
    pub api: Api,
    pub seller: String,
    /// The catalog's SKUs, each stocked with [`STOCK`] units.
    pub skus: Vec<String>,
    jwt: commerce_http::JwtKeys,
    /// The engine's database, where buyers' credentials are written.
    pool: sqlx::PgPool,
}

/// Units each catalog SKU starts with: ample for every checkout of a run.
pub const STOCK: i64 = 1_000_000;

impl Shop {
    /// Registers a seller (through the API, password hashing included) and lists `products`
    /// products, each stocked.
    pub async fn open(engine: &Engine, products: usize) -> anyhow::Result<Self> {
        Self::open_at(
            &engine.base_url,
            engine.pool.clone(),
            engine.jwt.clone(),
            products,
        )
        .await
    }

    /// As [`Shop::open`], for an engine reached by URL (its command routes at `base_url`),
    /// whose database `pool` is on and whose tokens `jwt` signs: one run as separate processes.
    pub async fn open_at(
        base_url: &str,
        pool: sqlx::PgPool,
        jwt: commerce_http::JwtKeys,
        products: usize,
    ) -> anyhow::Result<Self> {
        let api = Api::new(base_url)?;
        let email = format!("seller-{}@bench.example", Uuid::new_v4().simple());
        let password = "bench seller password";
        api.post(
            "/v1/accounts",
            None,
            &json!({"email": email, "password": password, "name": "Bench Seller", "role": "seller"}),
        )
        .await?
        .expect(201, "registering the seller")?;
        let token = api
            .post(
                "/v1/auth/token",
                None,
                &json!({"email": email, "password": password}),
            )
            .await?
            .expect(200, "signing the seller in")?
            .json()?;
        let seller = token["access_token"]
            .as_str()
            .context("a token response without access_token")?
            .to_owned();
        let mut shop = Self {
            api,
            seller,
            skus: Vec::new(),
            jwt,
            pool,
        };
        let categories = ["kitchen", "garden", "books", "toys", "clothing"];
        for i in 0..products {
            let sku = format!("BENCH-{i:04}");
            let category = categories[i % categories.len()];
            shop.product(&sku, 500 + 37 * i as i64, category, STOCK)
                .await?;
            shop.skus.push(sku);
        }
        Ok(shop)
    }

    /// Lists a product selling `sku`, stocked with `stock` units when positive.
    pub async fn product(
        &self,
        sku: &str,
        price: i64,
        category: &str,
        stock: i64,
    ) -> anyhow::Result<()> {
        self.api
            .post(
                "/v1/products",
                Some(&self.seller),
                &json!({"sku": sku, "name": format!("Bench product {sku}"),
                        "description": "A product the load generator sells",
                        "price": {"amount": price, "currency": "EUR"},
                        "category": format!("bench/{category}"),
                        "attributes": {"colour": if price % 2 == 0 { "red" } else { "blue" }}}),
            )
            .await?
            .expect(201, "creating a product")?;
        if stock > 0 {
            self.api
                .post(
                    &format!("/v1/inventory/{sku}/restock"),
                    Some(&self.seller),
                    &json!({"quantity": stock}),
                )
                .await?
                .expect(200, "stocking a product")?;
        }
        Ok(())
    }

    /// A buyer token for a fresh account.
    pub async fn buyer(&self) -> anyhow::Result<String> {
        Ok(self.buyers(1).await?.remove(0))
    }

    /// `n` buyer tokens, for fresh accounts. The engine accepts a token only for an account
    /// with credentials: registering each through the API would spend the run hashing
    /// passwords, so their credentials rows (without a password: they never sign in) are
    /// written straight into the engine's database, in one statement.
    pub async fn buyers(&self, n: usize) -> anyhow::Result<Vec<String>> {
        let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
        sqlx::query("INSERT INTO credentials (account_id) SELECT unnest($1::uuid[])")
            .bind(&ids)
            .execute(&self.pool)
            .await
            .context("writing the buyers' credentials")?;
        ids.into_iter()
            .map(|id| {
                self.jwt
                    .issue(AccountId(id), Role::Buyer, 1)
                    .context("minting a buyer token")
            })
            .collect()
    }

    /// Sets the quantity of `sku` in the buyer's cart.
    pub async fn set_quantity(
        &self,
        buyer: &str,
        sku: &str,
        quantity: u32,
    ) -> anyhow::Result<Answer> {
        Api::send(
            self.api
                .request(
                    Method::PUT,
                    &format!("/v1/me/cart/items/{sku}"),
                    Some(buyer),
                )
                .json(&json!({ "quantity": quantity })),
        )
        .await
    }
}

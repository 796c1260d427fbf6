//! `carts`: each buyer's open cart and wishlist (`rm_carts`).

use anyhow::Context;
use commerce_domain::cart::{Cart, CartEvent};
use cqrs_es::Aggregate;
use serde_json::{json, Value};
use sqlx::PgConnection;

use crate::{Projection, StoredEvent};

/// The `carts` projection.
pub struct Carts;

impl Projection for Carts {
    fn name(&self) -> &'static str {
        "carts"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["cart"]
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        apply(conn, event).await
    }
}

/// The cart as `GET /v1/me/cart` shows it.
fn view(cart: &Cart) -> (Value, Option<Value>, Value) {
    let items: Vec<Value> = cart
        .lines
        .iter()
        .map(|(sku, line)| {
            json!({ "sku": sku, "product_id": line.product_id, "quantity": line.quantity,
                    "unit_price": line.unit_price, "line_total": line.unit_price.times(line.quantity) })
        })
        .collect();
    (
        json!(items),
        cart.total().map(|t| json!(t)),
        json!(cart.wishlist),
    )
}

async fn apply(db: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
    let cart_event: CartEvent =
        serde_json::from_value(event.payload.clone()).context("decoding a cart event")?;
    let buyer: uuid::Uuid = event
        .aggregate_id
        .parse()
        .context("a cart id is the buyer's account id")?;
    let state: Option<Value> =
        sqlx::query_scalar("SELECT state FROM rm_carts WHERE buyer_id = $1 FOR UPDATE")
            .bind(buyer)
            .fetch_optional(&mut *db)
            .await?;
    let mut cart: Cart = match state {
        Some(state) => serde_json::from_value(state).context("decoding the folded cart")?,
        None => Cart::default(),
    };
    cart.apply(cart_event);
    let (items, total, wishlist) = view(&cart);
    sqlx::query(
        "INSERT INTO rm_carts (buyer_id, state, items, total, wishlist, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (buyer_id) DO UPDATE SET state = $2, items = $3, total = $4, wishlist = $5, updated_at = $6",
    )
    .bind(buyer)
    .bind(serde_json::to_value(&cart)?)
    .bind(items)
    .bind(total)
    .bind(wishlist)
    .bind(event.recorded_at)
    .execute(&mut *db)
    .await?;
    Ok(())
}

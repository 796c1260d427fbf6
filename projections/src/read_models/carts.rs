//! `carts`: each buyer's open cart and wishlist (`rm_carts`).

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use commerce_domain::cart::{Cart, CartEvent};
use cqrs_es::Aggregate;
use serde_json::{json, Value};
use sqlx::PgConnection;
use uuid::Uuid;

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

    fn tables(&self) -> &'static [&'static str] {
        &["rm_carts"]
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        apply_batch(conn, std::slice::from_ref(event)).await
    }

    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> anyhow::Result<()> {
        apply_batch(conn, events).await
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

/// Folds the batch's events into each buyer's stored cart in memory, then writes every cart
/// it touched in one statement: two round trips per batch, whatever its size.
async fn apply_batch(db: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
    let owners: Vec<Uuid> = events
        .iter()
        .map(|event| {
            event
                .aggregate_id
                .parse()
                .context("a cart id is the buyer's account id")
        })
        .collect::<anyhow::Result<_>>()?;
    let mut buyers = owners.clone();
    buyers.sort_unstable();
    buyers.dedup();
    let stored: Vec<(Uuid, Value)> = sqlx::query_as(
        "SELECT buyer_id, state FROM rm_carts WHERE buyer_id = ANY($1) ORDER BY buyer_id FOR UPDATE",
    )
    .bind(&buyers)
    .fetch_all(&mut *db)
    .await?;
    let mut carts: BTreeMap<Uuid, (Cart, DateTime<Utc>)> = BTreeMap::new();
    for (buyer, state) in stored {
        let cart = serde_json::from_value(state).context("decoding the folded cart")?;
        carts.insert(buyer, (cart, DateTime::<Utc>::MIN_UTC));
    }
    for (event, buyer) in events.iter().zip(owners) {
        let cart_event: CartEvent = event.decode().context("decoding a cart event")?;
        let (cart, updated_at) = carts.entry(buyer).or_default();
        cart.apply(cart_event);
        *updated_at = event.recorded_at;
    }
    let (mut ids, mut states, mut items, mut totals, mut wishlists, mut updated) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for (buyer, (cart, updated_at)) in carts {
        let (cart_items, total, wishlist) = view(&cart);
        ids.push(buyer);
        states.push(serde_json::to_value(&cart)?);
        items.push(cart_items);
        totals.push(total);
        wishlists.push(wishlist);
        updated.push(updated_at);
    }
    sqlx::query(
        "INSERT INTO rm_carts (buyer_id, state, items, total, wishlist, updated_at) \
         SELECT * FROM UNNEST($1::uuid[], $2::jsonb[], $3::jsonb[], $4::jsonb[], $5::jsonb[], $6::timestamptz[]) \
         ON CONFLICT (buyer_id) DO UPDATE SET state = EXCLUDED.state, items = EXCLUDED.items, \
           total = EXCLUDED.total, wishlist = EXCLUDED.wishlist, updated_at = EXCLUDED.updated_at",
    )
    .bind(&ids)
    .bind(&states)
    .bind(&items)
    .bind(&totals)
    .bind(&wishlists)
    .bind(&updated)
    .execute(&mut *db)
    .await?;
    Ok(())
}

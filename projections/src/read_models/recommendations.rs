//! `recommendations`: units ordered per product, products bought together, and what each buyer
//! bought or carted.

use anyhow::Context;
use commerce_domain::cart::CartEvent;
use commerce_domain::order::OrderEvent;
use sqlx::PgConnection;

use crate::{Projection, StoredEvent};

/// The `recommendations` projection.
pub struct Recommendations;

impl Projection for Recommendations {
    fn name(&self) -> &'static str {
        "recommendations"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["order", "cart"]
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        apply(conn, event).await
    }
}

async fn remember(
    db: &mut PgConnection,
    buyer: uuid::Uuid,
    product: uuid::Uuid,
    source: &str,
    event: &StoredEvent,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO rm_buyer_products (buyer_id, product_id, source, at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (buyer_id, product_id, source) DO UPDATE SET at = $4",
    )
    .bind(buyer)
    .bind(product)
    .bind(source)
    .bind(event.recorded_at)
    .execute(&mut *db)
    .await?;
    Ok(())
}

async fn apply(db: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
    if event.aggregate_type == "cart" {
        if let CartEvent::ItemQuantitySet { product_id, .. } =
            serde_json::from_value(event.payload.clone()).context("decoding a cart event")?
        {
            let buyer: uuid::Uuid = event
                .aggregate_id
                .parse()
                .context("a cart id is the buyer's id")?;
            remember(db, buyer, product_id.0, "carted", event).await?;
        }
        return Ok(());
    }
    let OrderEvent::OrderPlaced {
        buyer_id, lines, ..
    } = serde_json::from_value(event.payload.clone()).context("decoding an order event")?
    else {
        return Ok(());
    };
    let mut products: Vec<(uuid::Uuid, i64)> = Vec::new();
    for line in &lines {
        match products.iter_mut().find(|(p, _)| *p == line.product_id.0) {
            Some((_, units)) => *units += i64::from(line.quantity),
            None => products.push((line.product_id.0, i64::from(line.quantity))),
        }
    }
    for (product, units) in &products {
        sqlx::query(
            "INSERT INTO rm_product_popularity (product_id, units, orders, last_ordered) VALUES ($1, $2, 1, $3) \
             ON CONFLICT (product_id) DO UPDATE SET units = rm_product_popularity.units + $2, \
                 orders = rm_product_popularity.orders + 1, last_ordered = $3",
        )
        .bind(product)
        .bind(units)
        .bind(event.recorded_at)
        .execute(&mut *db)
        .await?;
        remember(db, buyer_id.0, *product, "bought", event).await?;
        for (other, _) in products.iter().filter(|(other, _)| other != product) {
            sqlx::query(
                "INSERT INTO rm_bought_together (product_id, other_id, orders) VALUES ($1, $2, 1) \
                 ON CONFLICT (product_id, other_id) DO UPDATE SET orders = rm_bought_together.orders + 1",
            )
            .bind(product)
            .bind(other)
            .execute(&mut *db)
            .await?;
        }
    }
    Ok(())
}

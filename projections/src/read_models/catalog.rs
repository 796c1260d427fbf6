//! `catalog`: products with variants and attributes, searchable (`rm_products`).

use anyhow::Context;
use commerce_domain::product::ProductEvent;
use serde_json::json;
use sqlx::PgConnection;

use crate::{Projection, StoredEvent};

/// The `catalog` projection.
pub struct Catalog;

impl Projection for Catalog {
    fn name(&self) -> &'static str {
        "catalog"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["product"]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_products"]
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        apply(conn, event).await
    }
}

async fn apply(db: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
    let product_id: uuid::Uuid = event
        .aggregate_id
        .parse()
        .context("a product id is a UUID")?;
    let at = event.recorded_at;
    match event.decode().context("decoding a product event")? {
        ProductEvent::ProductCreated { seller_id, product } => {
            sqlx::query(
                "INSERT INTO rm_products (product_id, seller_id, sku, name, description, price_amount, currency, category, \
                                          attributes, variants, listed, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, true, $11, $11)",
            )
            .bind(product_id)
            .bind(seller_id.0)
            .bind(product.sku.as_str())
            .bind(&product.name)
            .bind(&product.description)
            .bind(product.price.amount)
            .bind(product.price.currency.as_str())
            .bind(&product.category)
            .bind(json!(product.attributes))
            .bind(json!(product.variants))
            .bind(at)
            .execute(&mut *db)
            .await?;
        }
        ProductEvent::ProductUpdated { changes } => {
            sqlx::query(
                "UPDATE rm_products SET name = COALESCE($2, name), description = COALESCE($3, description), \
                     price_amount = COALESCE($4, price_amount), category = COALESCE($5, category), \
                     attributes = COALESCE($6, attributes), updated_at = $7 WHERE product_id = $1",
            )
            .bind(product_id)
            .bind(changes.name)
            .bind(changes.description)
            .bind(changes.price.map(|p| p.amount))
            .bind(changes.category)
            .bind(changes.attributes.map(|a| json!(a)))
            .bind(at)
            .execute(&mut *db)
            .await?;
        }
        ProductEvent::ProductDelisted => {
            sqlx::query(
                "UPDATE rm_products SET listed = false, updated_at = $2 WHERE product_id = $1",
            )
            .bind(product_id)
            .bind(at)
            .execute(&mut *db)
            .await?;
        }
    }
    Ok(())
}

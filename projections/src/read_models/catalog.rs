//! `catalog`: products with variants and attributes, searchable (`rm_products`).

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use commerce_domain::product::{ProductChanges, ProductEvent};
use serde_json::{json, Value};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{fold_ahead, Fold, FoldedBatch, Projection, StoredEvent};

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
        self.apply_batch(conn, std::slice::from_ref(event)).await
    }

    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> anyhow::Result<()> {
        Changes::fold(events)?.write(conn).await
    }

    fn fold_batch(&self, events: &[StoredEvent]) -> Option<anyhow::Result<Box<dyn FoldedBatch>>> {
        fold_ahead::<Changes>(events)
    }
}

/// A product created in this batch, with every later change folded in.
struct NewProduct {
    seller_id: Uuid,
    sku: String,
    name: String,
    description: String,
    price_amount: i64,
    currency: String,
    category: String,
    attributes: Value,
    variants: Value,
    listed: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// The changes of a product created before this batch: the last value of each field.
#[derive(Default)]
struct Update {
    name: Option<String>,
    description: Option<String>,
    price_amount: Option<i64>,
    category: Option<String>,
    attributes: Option<Value>,
    listed: Option<bool>,
    updated_at: Option<DateTime<Utc>>,
}

/// A batch folded per product: one statement inserts the new ones, one updates the others.
#[derive(Default)]
struct Changes {
    created: BTreeMap<Uuid, NewProduct>,
    updated: BTreeMap<Uuid, Update>,
}

impl Fold for Changes {
    fn add(&mut self, event: &StoredEvent) -> anyhow::Result<()> {
        let product_id: Uuid = event
            .aggregate_id
            .parse()
            .context("a product id is a UUID")?;
        let at = event.recorded_at;
        match event.decode().context("decoding a product event")? {
            ProductEvent::ProductCreated { seller_id, product } => {
                self.created.insert(
                    product_id,
                    NewProduct {
                        seller_id: seller_id.0,
                        sku: product.sku.as_str().to_owned(),
                        name: product.name,
                        description: product.description,
                        price_amount: product.price.amount,
                        currency: product.price.currency.as_str().to_owned(),
                        category: product.category,
                        attributes: json!(product.attributes),
                        variants: json!(product.variants),
                        listed: true,
                        created_at: at,
                        updated_at: at,
                    },
                );
            }
            ProductEvent::ProductUpdated { changes } => match self.created.get_mut(&product_id) {
                Some(new) => new.change(changes, at),
                None => self
                    .updated
                    .entry(product_id)
                    .or_default()
                    .change(changes, at),
            },
            ProductEvent::ProductDelisted => self.list(product_id, false, at),
            ProductEvent::ProductRelisted => self.list(product_id, true, at),
        }
        Ok(())
    }

    async fn write(self, db: &mut PgConnection) -> anyhow::Result<()> {
        if !self.created.is_empty() {
            insert(db, self.created).await?;
        }
        if !self.updated.is_empty() {
            update(db, self.updated).await?;
        }
        Ok(())
    }
}

impl Changes {
    /// The product was put on sale (`true`) or taken off (`false`).
    fn list(&mut self, product_id: Uuid, listed: bool, at: DateTime<Utc>) {
        match self.created.get_mut(&product_id) {
            Some(new) => {
                new.listed = listed;
                new.updated_at = at;
            }
            None => {
                let update = self.updated.entry(product_id).or_default();
                update.listed = Some(listed);
                update.updated_at = Some(at);
            }
        }
    }
}

impl NewProduct {
    fn change(&mut self, changes: ProductChanges, at: DateTime<Utc>) {
        let mut update = Update::default();
        update.change(changes, at);
        self.name = update.name.unwrap_or(std::mem::take(&mut self.name));
        self.description = update
            .description
            .unwrap_or(std::mem::take(&mut self.description));
        self.price_amount = update.price_amount.unwrap_or(self.price_amount);
        self.category = update
            .category
            .unwrap_or(std::mem::take(&mut self.category));
        self.attributes = update
            .attributes
            .unwrap_or(std::mem::take(&mut self.attributes));
        self.updated_at = at;
    }
}

impl Update {
    fn change(&mut self, changes: ProductChanges, at: DateTime<Utc>) {
        self.name = changes.name.or(self.name.take());
        self.description = changes.description.or(self.description.take());
        // The currency is the product's for good: a new price changes its amount only.
        self.price_amount = changes.price.map(|p| p.amount).or(self.price_amount);
        self.category = changes.category.or(self.category.take());
        self.attributes = changes
            .attributes
            .map(|a| json!(a))
            .or(self.attributes.take());
        self.updated_at = Some(at);
    }
}

async fn insert(db: &mut PgConnection, created: BTreeMap<Uuid, NewProduct>) -> anyhow::Result<()> {
    let n = created.len();
    let mut ids = Vec::with_capacity(n);
    let mut sellers = Vec::with_capacity(n);
    let mut skus = Vec::with_capacity(n);
    let mut names = Vec::with_capacity(n);
    let mut descriptions = Vec::with_capacity(n);
    let mut amounts = Vec::with_capacity(n);
    let mut currencies = Vec::with_capacity(n);
    let mut categories = Vec::with_capacity(n);
    let mut attributes = Vec::with_capacity(n);
    let mut variants = Vec::with_capacity(n);
    let mut listed = Vec::with_capacity(n);
    let mut created_at = Vec::with_capacity(n);
    let mut updated_at = Vec::with_capacity(n);
    for (id, p) in created {
        ids.push(id);
        sellers.push(p.seller_id);
        skus.push(p.sku);
        names.push(p.name);
        descriptions.push(p.description);
        amounts.push(p.price_amount);
        currencies.push(p.currency);
        categories.push(p.category);
        attributes.push(p.attributes);
        variants.push(p.variants);
        listed.push(p.listed);
        created_at.push(p.created_at);
        updated_at.push(p.updated_at);
    }
    sqlx::query(
        "INSERT INTO rm_products (product_id, seller_id, sku, name, description, price_amount, currency, \
                                  category, attributes, variants, listed, created_at, updated_at) \
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::bigint[], \
                              $7::text[], $8::text[], $9::jsonb[], $10::jsonb[], $11::bool[], \
                              $12::timestamptz[], $13::timestamptz[])",
    )
    .bind(&ids)
    .bind(&sellers)
    .bind(&skus)
    .bind(&names)
    .bind(&descriptions)
    .bind(&amounts)
    .bind(&currencies)
    .bind(&categories)
    .bind(&attributes)
    .bind(&variants)
    .bind(&listed)
    .bind(&created_at)
    .bind(&updated_at)
    .execute(&mut *db)
    .await?;
    Ok(())
}

async fn update(db: &mut PgConnection, updated: BTreeMap<Uuid, Update>) -> anyhow::Result<()> {
    let n = updated.len();
    let mut ids = Vec::with_capacity(n);
    let mut names = Vec::with_capacity(n);
    let mut descriptions = Vec::with_capacity(n);
    let mut amounts = Vec::with_capacity(n);
    let mut categories = Vec::with_capacity(n);
    let mut attributes = Vec::with_capacity(n);
    let mut listed = Vec::with_capacity(n);
    let mut updated_at = Vec::with_capacity(n);
    for (id, u) in updated {
        ids.push(id);
        names.push(u.name);
        descriptions.push(u.description);
        amounts.push(u.price_amount);
        categories.push(u.category);
        attributes.push(u.attributes);
        listed.push(u.listed);
        updated_at.push(u.updated_at);
    }
    let done = sqlx::query(
        "UPDATE rm_products p SET name = COALESCE(u.n, p.name), description = COALESCE(u.d, p.description), \
             price_amount = COALESCE(u.a, p.price_amount), category = COALESCE(u.c, p.category), \
             attributes = COALESCE(u.at, p.attributes), listed = COALESCE(u.l, p.listed), \
             updated_at = COALESCE(u.ts, p.updated_at) \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::jsonb[], \
                     $7::bool[], $8::timestamptz[]) AS u(id, n, d, a, c, at, l, ts) \
         WHERE p.product_id = u.id",
    )
    .bind(&ids)
    .bind(&names)
    .bind(&descriptions)
    .bind(&amounts)
    .bind(&categories)
    .bind(&attributes)
    .bind(&listed)
    .bind(&updated_at)
    .execute(&mut *db)
    .await?;
    anyhow::ensure!(
        done.rows_affected() == n as u64,
        "{} of the batch's products have no row to update",
        n as u64 - done.rows_affected()
    );
    Ok(())
}

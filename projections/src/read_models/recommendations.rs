//! `recommendations`: units ordered per product, products bought together, and what each buyer
//! bought or carted.

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use commerce_domain::cart::CartEvent;
use commerce_domain::order::OrderEvent;
use sqlx::PgConnection;
use uuid::Uuid;

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

    fn tables(&self) -> &'static [&'static str] {
        &[
            "rm_product_popularity",
            "rm_bought_together",
            "rm_buyer_products",
        ]
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

/// What a batch adds up to, keyed so that one statement touches each row once, in key order
/// (two workers sharing a consumer then lock rows in the same order).
#[derive(Default)]
struct Tally {
    /// (buyer, product, source) → when, the latest.
    seen: BTreeMap<(Uuid, Uuid, &'static str), DateTime<Utc>>,
    /// product → (units, orders, last ordered).
    popularity: BTreeMap<Uuid, (i64, i64, DateTime<Utc>)>,
    /// (product, other) → orders with both.
    together: BTreeMap<(Uuid, Uuid), i64>,
}

impl Tally {
    fn add(&mut self, event: &StoredEvent) -> anyhow::Result<()> {
        let at = event.recorded_at;
        if event.aggregate_type == "cart" {
            if let CartEvent::ItemQuantitySet { product_id, .. } =
                event.decode().context("decoding a cart event")?
            {
                let buyer: Uuid = event
                    .aggregate_id
                    .parse()
                    .context("a cart id is the buyer's id")?;
                self.seen.insert((buyer, product_id.0, "carted"), at);
            }
            return Ok(());
        }
        let OrderEvent::OrderPlaced {
            buyer_id, lines, ..
        } = event.decode().context("decoding an order event")?
        else {
            return Ok(());
        };
        let mut products: Vec<(Uuid, i64)> = Vec::new();
        for line in &lines {
            match products.iter_mut().find(|(p, _)| *p == line.product_id.0) {
                Some((_, units)) => *units += i64::from(line.quantity),
                None => products.push((line.product_id.0, i64::from(line.quantity))),
            }
        }
        for (product, units) in &products {
            let entry = self.popularity.entry(*product).or_insert((0, 0, at));
            *entry = (entry.0 + units, entry.1 + 1, at);
            self.seen.insert((buyer_id.0, *product, "bought"), at);
            for (other, _) in products.iter().filter(|(other, _)| other != product) {
                *self.together.entry((*product, *other)).or_default() += 1;
            }
        }
        Ok(())
    }

    async fn write(self, db: &mut PgConnection) -> anyhow::Result<()> {
        if !self.seen.is_empty() {
            let (mut buyers, mut products, mut sources, mut ats) = (vec![], vec![], vec![], vec![]);
            for ((buyer, product, source), at) in self.seen {
                buyers.push(buyer);
                products.push(product);
                sources.push(source);
                ats.push(at);
            }
            sqlx::query(
                "INSERT INTO rm_buyer_products (buyer_id, product_id, source, at) \
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[]) \
                 ON CONFLICT (buyer_id, product_id, source) DO UPDATE SET at = EXCLUDED.at",
            )
            .bind(&buyers)
            .bind(&products)
            .bind(&sources)
            .bind(&ats)
            .execute(&mut *db)
            .await?;
        }
        if !self.popularity.is_empty() {
            let (mut products, mut units, mut orders, mut lasts) = (vec![], vec![], vec![], vec![]);
            for (product, (product_units, product_orders, last)) in self.popularity {
                products.push(product);
                units.push(product_units);
                orders.push(product_orders);
                lasts.push(last);
            }
            sqlx::query(
                "INSERT INTO rm_product_popularity (product_id, units, orders, last_ordered) \
                 SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[], $4::timestamptz[]) \
                 ON CONFLICT (product_id) DO UPDATE SET \
                   units = rm_product_popularity.units + EXCLUDED.units, \
                   orders = rm_product_popularity.orders + EXCLUDED.orders, \
                   last_ordered = EXCLUDED.last_ordered",
            )
            .bind(&products)
            .bind(&units)
            .bind(&orders)
            .bind(&lasts)
            .execute(&mut *db)
            .await?;
        }
        if !self.together.is_empty() {
            let (mut products, mut others, mut orders) = (vec![], vec![], vec![]);
            for ((product, other), count) in self.together {
                products.push(product);
                others.push(other);
                orders.push(count);
            }
            sqlx::query(
                "INSERT INTO rm_bought_together (product_id, other_id, orders) \
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[]) \
                 ON CONFLICT (product_id, other_id) DO UPDATE SET \
                   orders = rm_bought_together.orders + EXCLUDED.orders",
            )
            .bind(&products)
            .bind(&others)
            .bind(&orders)
            .execute(&mut *db)
            .await?;
        }
        Ok(())
    }
}

/// Adds the batch up in memory, then writes each table in one statement.
async fn apply_batch(db: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
    let mut tally = Tally::default();
    for event in events {
        tally.add(event)?;
    }
    tally.write(db).await
}

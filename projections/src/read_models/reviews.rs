//! `reviews`: reviews per product and each product's rating summary.

use anyhow::Context;
use commerce_domain::review::ReviewEvent;
use sqlx::PgConnection;

use crate::{Projection, StoredEvent};

/// The `reviews` projection.
pub struct Reviews;

impl Projection for Reviews {
    fn name(&self) -> &'static str {
        "reviews"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["review"]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_reviews", "rm_rating_summaries"]
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        apply(conn, event).await
    }
}

async fn apply(db: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
    let ReviewEvent::ReviewWritten {
        product_id,
        buyer_id,
        author_name,
        rating,
        title,
        body,
    } = event.decode().context("decoding a review event")?;
    sqlx::query("INSERT INTO rm_reviews (product_id, buyer_id, rating, title, body, written_at, author_name, written_position) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(product_id.0)
        .bind(buyer_id.0)
        .bind(i16::from(rating))
        .bind(title)
        .bind(body)
        .bind(event.recorded_at)
        // Sealed as the event holds it: opened when a response is built.
        .bind(author_name.map(|name| serde_json::json!(name)))
        .bind(event.position)
        .execute(&mut *db)
        .await?;
    sqlx::query(
        "INSERT INTO rm_rating_summaries (product_id, review_count, rating_sum) VALUES ($1, 1, $2) \
         ON CONFLICT (product_id) DO UPDATE SET review_count = rm_rating_summaries.review_count + 1, \
             rating_sum = rm_rating_summaries.rating_sum + $2",
    )
    .bind(product_id.0)
    .bind(i64::from(rating))
    .execute(&mut *db)
    .await?;
    Ok(())
}

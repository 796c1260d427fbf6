//! Webhook subscriptions: the `webhooks` table.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::signature::SigningKey;

/// Who owns a webhook, and so which events it may receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Any event.
    Admin(Uuid),
    /// Only events about this seller's products, SKUs and order lines.
    Seller(Uuid),
}

impl Owner {
    pub fn id(self) -> Uuid {
        match self {
            Owner::Admin(id) | Owner::Seller(id) => id,
        }
    }

    fn role(self) -> &'static str {
        match self {
            Owner::Admin(_) => "admin",
            Owner::Seller(_) => "seller",
        }
    }
}

/// A subscription.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub webhook_id: Uuid,
    pub owner: Owner,
    pub url: String,
    pub event_types: Vec<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    webhook_id: Uuid,
    owner_id: Uuid,
    owner_role: String,
    url: String,
    event_types: Vec<String>,
    created_at: DateTime<Utc>,
}

impl From<Row> for Webhook {
    fn from(row: Row) -> Self {
        let owner = match row.owner_role.as_str() {
            "seller" => Owner::Seller(row.owner_id),
            _ => Owner::Admin(row.owner_id),
        };
        Self {
            webhook_id: row.webhook_id,
            owner,
            url: row.url,
            event_types: row.event_types,
            created_at: row.created_at,
        }
    }
}

const COLUMNS: &str = "webhook_id, owner_id, owner_role, url, event_types, created_at";

/// Records a new webhook with a fresh key; the key is returned once, to show its secret.
pub async fn create(
    conn: &mut PgConnection,
    owner: Owner,
    url: &str,
    event_types: &[String],
) -> anyhow::Result<(Webhook, SigningKey)> {
    let key = SigningKey::generate();
    let row: Row = sqlx::query_as(&format!(
        "INSERT INTO webhooks (webhook_id, owner_id, owner_role, url, event_types, signing_key) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(owner.id())
    .bind(owner.role())
    .bind(url)
    .bind(event_types)
    .bind(key.as_bytes())
    .fetch_one(&mut *conn)
    .await
    .context("recording a webhook")?;
    Ok((row.into(), key))
}

/// The webhook `id`, unless deleted.
pub async fn get(executor: impl PgExecutor<'_>, id: Uuid) -> anyhow::Result<Option<Webhook>> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhooks WHERE webhook_id = $1 AND deleted_at IS NULL"
    ))
    .bind(id)
    .fetch_optional(executor)
    .await
    .context("reading a webhook")?;
    Ok(row.map(Webhook::from))
}

/// Every webhook still subscribed.
pub async fn active(executor: impl PgExecutor<'_>) -> anyhow::Result<Vec<Webhook>> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhooks WHERE deleted_at IS NULL"
    ))
    .fetch_all(executor)
    .await
    .context("reading the webhooks")?;
    Ok(rows.into_iter().map(Webhook::from).collect())
}

/// A page of webhooks, newest first: `owner`'s, or everyone's; `before` is the last of the
/// previous page.
pub async fn list_page(
    pool: &PgPool,
    owner: Option<Uuid>,
    before: (DateTime<Utc>, Uuid),
    limit: i64,
) -> anyhow::Result<Vec<Webhook>> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhooks WHERE deleted_at IS NULL \
         AND ($1::uuid IS NULL OR owner_id = $1) AND (created_at, webhook_id) < ($2, $3) \
         ORDER BY created_at DESC, webhook_id DESC LIMIT $4"
    ))
    .bind(owner)
    .bind(before.0)
    .bind(before.1)
    .bind(limit)
    .fetch_all(pool)
    .await
    .context("listing webhooks")?;
    Ok(rows.into_iter().map(Webhook::from).collect())
}

/// Unsubscribes: the webhook is gone and its pending deliveries are cancelled. The deliveries
/// are locked before the webhook, in the order a worker recording an attempt locks them.
pub async fn delete(pool: &PgPool, id: Uuid) -> anyhow::Result<bool> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE webhook_deliveries SET state = 'cancelled', finished_at = now() \
         WHERE webhook_id = $1 AND state = 'pending'",
    )
    .bind(id)
    .execute(&mut *tx)
    .await
    .context("cancelling a deleted webhook's deliveries")?;
    let deleted = sqlx::query(
        "UPDATE webhooks SET deleted_at = now() WHERE webhook_id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .execute(&mut *tx)
    .await
    .context("deleting a webhook")?
    .rows_affected()
        == 1;
    tx.commit().await?;
    Ok(deleted)
}

/// Gives the webhook a new key; the previous one goes on signing (beside it) for `overlap`,
/// so that receivers switch secrets without rejecting a delivery.
pub async fn rotate(
    conn: &mut PgConnection,
    id: Uuid,
    overlap: std::time::Duration,
) -> anyhow::Result<Option<SigningKey>> {
    let key = SigningKey::generate();
    let overlap = chrono::Duration::from_std(overlap).context("the overlap is too long")?;
    let rotated = sqlx::query(
        "UPDATE webhooks SET previous_key = signing_key, signing_key = $2, \
         previous_key_until = now() + $3 WHERE webhook_id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(key.as_bytes())
    .bind(overlap)
    .execute(&mut *conn)
    .await
    .context("rotating a webhook's secret")?
    .rows_affected()
        == 1;
    Ok(rotated.then_some(key))
}

/// The keys that sign a delivery now: the current one, and the previous one during a
/// rotation's overlap. `None` once the webhook is deleted.
pub async fn signing_keys(
    executor: impl PgExecutor<'_>,
    id: Uuid,
) -> anyhow::Result<Option<Vec<SigningKey>>> {
    let row: Option<(Vec<u8>, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT signing_key, CASE WHEN previous_key_until > now() THEN previous_key END \
         FROM webhooks WHERE webhook_id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .fetch_optional(executor)
    .await
    .context("reading a webhook's keys")?;
    Ok(row.map(|(current, previous)| {
        std::iter::once(current)
            .chain(previous)
            .map(SigningKey::from_bytes)
            .collect()
    }))
}

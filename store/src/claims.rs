//! Claims: unique e-mails and SKUs, kept in their own tables beside the events.

use std::fmt;

use anyhow::Context;
use commerce_domain::{AccountId, Email, ProductId, Sku};
use sqlx::{PgPool, Postgres, Transaction};

/// A unique value an aggregate takes, written in the same transaction as its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    Email {
        email: Email,
        account_id: AccountId,
    },
    Sku {
        sku: Sku,
        product_id: ProductId,
        seller_id: AccountId,
    },
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Claim::Email { email, .. } => write!(f, "e-mail {}", email.as_str()),
            Claim::Sku { sku, .. } => write!(f, "SKU {sku}"),
        }
    }
}

impl Claim {
    /// Inserts the claim; `Ok(false)` when someone else holds it.
    pub(crate) async fn insert(&self, tx: &mut Transaction<'_, Postgres>) -> anyhow::Result<bool> {
        let inserted = match self {
            Claim::Email { email, account_id } => sqlx::query(
                "INSERT INTO email_claims (email, account_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(email.as_str())
            .bind(account_id.0)
            .execute(&mut **tx)
            .await,
            Claim::Sku { sku, product_id, seller_id } => sqlx::query(
                "INSERT INTO sku_claims (sku, product_id, seller_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(sku.as_str())
            .bind(product_id.0)
            .bind(seller_id.0)
            .execute(&mut **tx)
            .await,
        }
        .with_context(|| format!("claiming {self}"))?;
        Ok(inserted.rows_affected() == 1)
    }
}

/// Who owns a SKU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkuOwner {
    pub product_id: ProductId,
    pub seller_id: AccountId,
}

/// The product and seller a SKU belongs to, or `None` for an unknown SKU.
pub async fn sku_owner(pool: &PgPool, sku: &Sku) -> anyhow::Result<Option<SkuOwner>> {
    let row: Option<(uuid::Uuid, uuid::Uuid)> =
        sqlx::query_as("SELECT product_id, seller_id FROM sku_claims WHERE sku = $1")
            .bind(sku.as_str())
            .fetch_optional(pool)
            .await
            .context("looking up a SKU's owner")?;
    Ok(row.map(|(product, seller)| SkuOwner {
        product_id: ProductId(product),
        seller_id: AccountId(seller),
    }))
}

/// The account that holds an e-mail address.
pub async fn account_by_email(pool: &PgPool, email: &Email) -> anyhow::Result<Option<AccountId>> {
    let row: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT account_id FROM email_claims WHERE email = $1")
            .bind(email.as_str())
            .fetch_optional(pool)
            .await
            .context("looking up an e-mail claim")?;
    Ok(row.map(AccountId))
}

//! Claims: rows a command writes beside its events, in the same transaction: unique e-mails and
//! SKUs, an account's credentials, the delivered purchases that entitle a buyer to review, and
//! the card tokens of payments (kept out of events: see [`crate::payment_tokens`]).

use std::fmt;

use anyhow::Context;
use commerce_domain::{AccountId, Email, OrderId, PaymentId, PaymentToken, ProductId, Sku};
use sqlx::{PgPool, Postgres, Transaction};

use crate::credentials::{self, PasswordHash};

/// A row written in the same transaction as a command's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// A unique e-mail address.
    Email { email: Email, account_id: AccountId },
    /// A unique SKU and who sells it.
    Sku {
        sku: Sku,
        product_id: ProductId,
        seller_id: AccountId,
    },
    /// A new account's password hash (`crate::credentials`): kept beside its events, never in
    /// them.
    Credentials {
        account_id: AccountId,
        password_hash: PasswordHash,
    },
    /// A buyer received a product; never taken by anyone else.
    DeliveredPurchase {
        buyer_id: AccountId,
        product_id: ProductId,
        order_id: OrderId,
    },
    /// A person forgotten: their data key destroyed (every sealed value of theirs reads as
    /// forgotten), their credentials voided (no sign-in, every token refused) and their e-mail
    /// released (the address itself is personal data). Never refused: forgetting twice is
    /// forgetting once.
    Forgotten { account_id: AccountId },
    /// The provider's card token of a payment, for the saga to authorise with.
    PaymentToken {
        payment_id: PaymentId,
        token: PaymentToken,
    },
    /// The checkout saga of a just placed order is due now (`crate::saga_due`). Never refused.
    SagaDue { order_id: OrderId },
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Claim::Email { email, .. } => write!(f, "e-mail {}", email.as_str()),
            Claim::Sku { sku, .. } => write!(f, "SKU {sku}"),
            Claim::DeliveredPurchase { product_id, .. } => {
                write!(f, "the purchase of product {product_id}")
            }
            Claim::Credentials { account_id, .. } => {
                write!(f, "the credentials of account {account_id}")
            }
            Claim::Forgotten { account_id } => write!(f, "the erasure of account {account_id}"),
            Claim::PaymentToken { payment_id, .. } => {
                write!(f, "the card token of payment {payment_id}")
            }
            Claim::SagaDue { order_id } => write!(f, "the checkout saga of order {order_id}"),
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
            Claim::Credentials { account_id, password_hash } => {
                return credentials::insert(tx, *account_id, password_hash).await;
            }
            Claim::DeliveredPurchase { buyer_id, product_id, order_id } => {
                sqlx::query(
                    "INSERT INTO delivered_purchases (buyer_id, product_id, order_id) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(buyer_id.0)
                .bind(product_id.0)
                .bind(order_id.0)
                .execute(&mut **tx)
                .await
                .with_context(|| format!("recording {self}"))?;
                return Ok(true);
            }
            Claim::Forgotten { account_id } => {
                crate::keys::forget(tx, account_id.0).await?;
                crate::credentials::forget(tx, *account_id).await?;
                sqlx::query("DELETE FROM email_claims WHERE account_id = $1")
                    .bind(account_id.0)
                    .execute(&mut **tx)
                    .await
                    .with_context(|| format!("recording {self}"))?;
                return Ok(true);
            }
            Claim::PaymentToken { payment_id, token } => {
                crate::payment_tokens::keep(tx, *payment_id, token)
                    .await
                    .with_context(|| format!("recording {self}"))?;
                return Ok(true);
            }
            Claim::SagaDue { order_id } => {
                crate::saga_due::wake(tx, &[order_id.0], &["order_placed"])
                    .await
                    .with_context(|| format!("recording {self}"))?;
                return Ok(true);
            }
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

/// Whether `buyer` has a delivered order of `product`.
pub async fn has_delivered_purchase(
    pool: &PgPool,
    buyer: AccountId,
    product: ProductId,
) -> anyhow::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM delivered_purchases WHERE buyer_id = $1 AND product_id = $2)",
    )
    .bind(buyer.0)
    .bind(product.0)
    .fetch_one(pool)
    .await
    .context("looking up delivered purchases")
}

/// SKU owners already looked up. A SKU claim never changes once made, so a cached owner never
/// goes stale; unknown SKUs are not cached (they may be claimed later).
pub struct SkuOwners {
    pool: PgPool,
    known: std::sync::Mutex<lru::LruCache<Sku, SkuOwner>>,
}

impl SkuOwners {
    pub fn new(pool: PgPool) -> Self {
        let capacity = std::num::NonZeroUsize::new(100_000).unwrap_or(std::num::NonZeroUsize::MIN);
        Self {
            pool,
            known: std::sync::Mutex::new(lru::LruCache::new(capacity)),
        }
    }

    /// The owner of `sku`, or `None` for an unknown SKU.
    pub async fn get(&self, sku: &Sku) -> anyhow::Result<Option<SkuOwner>> {
        let cached = self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sku)
            .copied();
        if cached.is_some() {
            return Ok(cached);
        }
        let owner = sku_owner(&self.pool, sku).await?;
        if let Some(owner) = owner {
            self.known
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .put(sku.clone(), owner);
        }
        Ok(owner)
    }
}

//! Card tokens, kept out of events.
//!
//! A checkout hands the provider's token for the buyer's card to the engine, which needs it for
//! one thing: the saga's call to authorise the payment (repeated by a worker that takes a saga
//! over). Events are kept for ever and published, so the token is not in them: the checkout
//! writes it here as a claim ([`crate::Claim::PaymentToken`]) in the transaction that places the
//! order, the saga reads it when it calls the provider, and deletes it in the transaction that
//! records the payment's end (captured, or compensation begun, or the saga done), after which
//! nothing can authorise that payment again.

use anyhow::Context;
use commerce_domain::{PaymentId, PaymentToken};
use sqlx::{PgConnection, PgPool};

/// Keeps the token of `payment_id`. A payment id is minted with its order, so a second token for
/// it can only be the same checkout's again (a commit retried after a lost connection).
pub(crate) async fn keep(
    conn: &mut PgConnection,
    payment_id: PaymentId,
    token: &PaymentToken,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO payment_tokens (payment_id, token) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(payment_id.0)
    .bind(token.expose())
    .execute(conn)
    .await
    .context("keeping a payment's card token")?;
    Ok(())
}

/// The card token of `payment_id`; `None` once the payment is final (or for no such payment).
pub async fn token(pool: &PgPool, payment_id: PaymentId) -> anyhow::Result<Option<PaymentToken>> {
    let token: Option<String> =
        sqlx::query_scalar("SELECT token FROM payment_tokens WHERE payment_id = $1")
            .bind(payment_id.0)
            .fetch_optional(pool)
            .await
            .context("reading a payment's card token")?;
    token
        .map(|t| PaymentToken::parse(&t).context("a kept card token is not a token"))
        .transpose()
}

/// Deletes the card token of `payment_id`, inside the transaction of the step that makes the
/// payment final; nothing to delete is fine (a step repeated, or a token never kept).
pub async fn forget(conn: &mut PgConnection, payment_id: PaymentId) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM payment_tokens WHERE payment_id = $1")
        .bind(payment_id.0)
        .execute(conn)
        .await
        .context("deleting a payment's card token")?;
    Ok(())
}

//! `payments`: each order's payment with its history (`rm_payments`).

use anyhow::Context;
use commerce_domain::payment::PaymentEvent;
use serde_json::json;
use sqlx::PgConnection;

use crate::{Projection, StoredEvent};

/// The `payments` projection.
pub struct Payments;

impl Projection for Payments {
    fn name(&self) -> &'static str {
        "payments"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["payment"]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_payments"]
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        apply(conn, event).await
    }
}

async fn apply(db: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
    let payment_id: uuid::Uuid = event
        .aggregate_id
        .parse()
        .context("a payment id is a UUID")?;
    let at = event.recorded_at;
    let (status, detail) = match event.decode().context("decoding a payment event")? {
        PaymentEvent::PaymentRequested { order_id, amount } => {
            sqlx::query(
                "INSERT INTO rm_payments (payment_id, order_id, status, amount, history, updated_at) VALUES ($1, $2, 'requested', $3, $4, $5)",
            )
            .bind(payment_id)
            .bind(order_id.0)
            .bind(json!(amount))
            .bind(json!([{ "status": "requested", "at": at, "amount": amount }]))
            .bind(at)
            .execute(&mut *db)
            .await?;
            return Ok(());
        }
        PaymentEvent::PaymentAuthorized { authorization_id } => (
            "authorized",
            json!({ "authorization_id": authorization_id }),
        ),
        PaymentEvent::PaymentDeclined { reason } => ("declined", json!({ "reason": reason })),
        PaymentEvent::PaymentTimedOut => ("timed_out", json!({})),
        PaymentEvent::PaymentCaptured { amount } => ("captured", json!({ "amount": amount })),
        PaymentEvent::PaymentVoided => ("voided", json!({})),
        PaymentEvent::PaymentRefunded { amount } => ("refunded", json!({ "amount": amount })),
    };
    let mut entry = detail;
    entry["status"] = json!(status);
    entry["at"] = json!(at);
    let updated = sqlx::query("UPDATE rm_payments SET status = $2, history = history || $3, updated_at = $4 WHERE payment_id = $1")
        .bind(payment_id)
        .bind(status)
        .bind(json!([entry]))
        .bind(at)
        .execute(&mut *db)
        .await?;
    anyhow::ensure!(
        updated.rows_affected() == 1,
        "payment {payment_id} has no row to update"
    );
    Ok(())
}

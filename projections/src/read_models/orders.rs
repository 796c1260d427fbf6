//! `orders`: every order with the timeline of its status changes (`rm_orders`); also serves the
//! purchase history and the sellers' queue.

use anyhow::Context;
use commerce_domain::order::OrderEvent;
use serde_json::json;
use sqlx::PgConnection;

use crate::{Projection, StoredEvent};

/// The `orders` projection.
pub struct Orders;

impl Projection for Orders {
    fn name(&self) -> &'static str {
        "orders"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["order"]
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        apply(conn, event).await
    }
}

async fn apply(db: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
    let order_event: OrderEvent =
        serde_json::from_value(event.payload.clone()).context("decoding an order event")?;
    let order_id: uuid::Uuid = event
        .aggregate_id
        .parse()
        .context("an order id is a UUID")?;
    let at = event.recorded_at;
    let (status, cancellation_reason, shipment) = match order_event {
        OrderEvent::OrderPlaced {
            buyer_id,
            lines,
            total,
            shipping_address,
            ..
        } => {
            let mut sellers: Vec<uuid::Uuid> = lines.iter().map(|l| l.seller_id.0).collect();
            sellers.sort();
            sellers.dedup();
            sqlx::query(
                "INSERT INTO rm_orders (order_id, buyer_id, seller_ids, status, lines, total, shipping_address, timeline, placed_at, updated_at) \
                 VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $8, $8)",
            )
            .bind(order_id)
            .bind(buyer_id.0)
            .bind(&sellers)
            .bind(json!(lines))
            .bind(json!(total))
            .bind(json!(shipping_address))
            .bind(json!([{ "status": "pending", "at": at }]))
            .bind(at)
            .execute(&mut *db)
            .await?;
            return Ok(());
        }
        OrderEvent::InventoryReserved => ("reserved", None, None),
        OrderEvent::PaymentAuthorized => ("authorized", None, None),
        OrderEvent::OrderConfirmed => ("confirmed", None, None),
        OrderEvent::OrderShipped {
            carrier,
            tracking_number,
        } => (
            "shipped",
            None,
            Some(
                json!({ "carrier": carrier, "tracking_number": tracking_number, "shipped_at": at }),
            ),
        ),
        OrderEvent::OrderDelivered => ("delivered", None, None),
        OrderEvent::OrderReturned { .. } => ("returned", None, None),
        OrderEvent::OrderRefunded => ("refunded", None, None),
        OrderEvent::OrderCancelled { reason, .. } => ("cancelled", Some(reason), None),
    };
    let updated = sqlx::query(
        "UPDATE rm_orders SET status = $2, timeline = timeline || $3, updated_at = $4, \
             cancellation_reason = COALESCE($5, cancellation_reason), shipment = COALESCE($6, shipment) \
         WHERE order_id = $1",
    )
    .bind(order_id)
    .bind(status)
    .bind(json!([{ "status": status, "at": at }]))
    .bind(at)
    .bind(cancellation_reason)
    .bind(shipment)
    .execute(&mut *db)
    .await?;
    anyhow::ensure!(
        updated.rows_affected() == 1,
        "order {order_id} has no row to update"
    );
    Ok(())
}

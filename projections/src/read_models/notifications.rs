//! `notifications`: one row per buyer-visible event (order placed, confirmed, payment failed,
//! cancelled, shipped, delivered, refunded), and a note to sellers of a confirmed order.

use anyhow::Context;
use commerce_domain::order::OrderEvent;
use commerce_domain::payment::PaymentEvent;
use serde_json::{json, Value};
use sqlx::PgConnection;

use crate::{Projection, StoredEvent};

/// The `notifications` projection.
pub struct Notifications;

impl Projection for Notifications {
    fn name(&self) -> &'static str {
        "notifications"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["order", "payment"]
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "rm_notifications",
            "rm_notification_orders",
            "rm_notification_payments",
        ]
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        apply(conn, event).await
    }
}

/// One notification. `ship_to` is the order's shipping address, sealed as the event holds it, for
/// the buyer's notifications of where the order goes (placed, shipped).
async fn notify(
    db: &mut PgConnection,
    event: &StoredEvent,
    account: uuid::Uuid,
    kind: &str,
    order_id: uuid::Uuid,
    message: String,
    ship_to: Option<&Value>,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO rm_notifications (account_id, kind, order_id, message, created_at, event_position, ship_to) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(account)
    .bind(kind)
    .bind(order_id)
    .bind(message)
    .bind(event.recorded_at)
    .bind(event.position)
    .bind(ship_to)
    .execute(&mut *db)
    .await?;
    Ok(())
}

/// The buyer and sellers of an order, and where it ships, as recorded when it was placed.
async fn parties(
    db: &mut PgConnection,
    order_id: uuid::Uuid,
) -> anyhow::Result<Option<(uuid::Uuid, Vec<uuid::Uuid>, Option<Value>)>> {
    Ok(sqlx::query_as(
        "SELECT buyer_id, seller_ids, ship_to FROM rm_notification_orders WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_optional(&mut *db)
    .await?)
}

fn short(order_id: uuid::Uuid) -> String {
    order_id.simple().to_string()[24..].to_owned()
}

async fn apply(db: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
    if event.aggregate_type == "payment" {
        let payment_id: uuid::Uuid = event
            .aggregate_id
            .parse()
            .context("a payment id is a UUID")?;
        match event.decode().context("decoding a payment event")? {
            PaymentEvent::PaymentRequested { order_id, .. } => {
                sqlx::query("INSERT INTO rm_notification_payments (payment_id, order_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(payment_id)
                    .bind(order_id.0)
                    .execute(&mut *db)
                    .await?;
            }
            PaymentEvent::PaymentDeclined { reason } => {
                let order_id: Option<uuid::Uuid> = sqlx::query_scalar(
                    "SELECT order_id FROM rm_notification_payments WHERE payment_id = $1",
                )
                .bind(payment_id)
                .fetch_optional(&mut *db)
                .await?;
                let order_id = order_id.context("a declined payment that was never requested")?;
                if let Some((buyer, ..)) = parties(db, order_id).await? {
                    let message = format!(
                        "The payment for order {} failed: {reason}.",
                        short(order_id)
                    );
                    notify(db, event, buyer, "payment_failed", order_id, message, None).await?;
                }
            }
            _ => {}
        }
        return Ok(());
    }
    let order_id: uuid::Uuid = event
        .aggregate_id
        .parse()
        .context("an order id is a UUID")?;
    let order_event: OrderEvent = event.decode().context("decoding an order event")?;
    if let OrderEvent::OrderPlaced {
        buyer_id,
        lines,
        total,
        shipping_address,
        ..
    } = &order_event
    {
        let ship_to = json!(shipping_address);
        let mut sellers: Vec<uuid::Uuid> = lines.iter().map(|l| l.seller_id.0).collect();
        sellers.sort();
        sellers.dedup();
        sqlx::query("INSERT INTO rm_notification_orders (order_id, buyer_id, seller_ids, ship_to) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
            .bind(order_id)
            .bind(buyer_id.0)
            .bind(&sellers)
            .bind(&ship_to)
            .execute(&mut *db)
            .await?;
        let amount = format!(
            "{}.{:02} {}",
            total.amount / 100,
            total.amount % 100,
            total.currency
        );
        let message = format!("Your order {} of {amount} was placed.", short(order_id));
        return notify(
            db,
            event,
            buyer_id.0,
            "order_placed",
            order_id,
            message,
            Some(&ship_to),
        )
        .await;
    }
    let Some((buyer, sellers, ship_to)) = parties(db, order_id).await? else {
        anyhow::bail!("order {order_id} was never placed");
    };
    let id = short(order_id);
    let (kind, message) = match order_event {
        OrderEvent::OrderConfirmed => {
            for seller in &sellers {
                notify(
                    db,
                    event,
                    *seller,
                    "order_to_ship",
                    order_id,
                    format!("Order {id} is confirmed and ready to ship."),
                    None,
                )
                .await?;
            }
            ("order_confirmed", format!("Your order {id} is confirmed."))
        }
        OrderEvent::OrderCancelled { reason, .. } => (
            "order_cancelled",
            format!("Your order {id} was cancelled: {reason}."),
        ),
        OrderEvent::OrderShipped {
            carrier,
            tracking_number,
        } => (
            "order_shipped",
            format!("Your order {id} shipped with {carrier} (tracking {tracking_number})."),
        ),
        OrderEvent::OrderDelivered => {
            ("order_delivered", format!("Your order {id} was delivered."))
        }
        OrderEvent::OrderRefunded => ("order_refunded", format!("Your order {id} was refunded.")),
        _ => return Ok(()),
    };
    let ship_to = ship_to.as_ref().filter(|_| kind == "order_shipped");
    notify(db, event, buyer, kind, order_id, message, ship_to).await
}

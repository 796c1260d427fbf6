//! `saga_triggers`: the projection that wakes a checkout saga when its order is placed,
//! cancelled, delivered or returned. Running on the projection runtime, a wake-up is written in the same
//! transaction as the runtime's bookkeeping: no order event is lost or handled twice.

use std::collections::BTreeMap;

use anyhow::Context;
use commerce_domain::order::OrderEvent;
use commerce_projections::{Projection, StoredEvent};
use sqlx::PgConnection;
use uuid::Uuid;

use commerce_store::saga_due;

/// Wakes sagas on the order events they answer.
pub struct SagaTriggers;

impl Projection for SagaTriggers {
    fn name(&self) -> &'static str {
        "saga_triggers"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["order"]
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        self.apply_batch(conn, std::slice::from_ref(event)).await
    }

    /// An order's saga has the order's id: a parked order event leaves that saga stuck.
    fn saga_of(&self, event: &StoredEvent) -> Option<Uuid> {
        event.aggregate_id.parse().ok()
    }

    /// One statement wakes every saga of the batch (an order woken twice keeps its last reason).
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> anyhow::Result<()> {
        let mut wakes = BTreeMap::new();
        let mut placed = Vec::new();
        for event in events {
            if let Some(reason) = reason_to_wake(event)? {
                let order_id: Uuid = event
                    .aggregate_id
                    .parse()
                    .context("an order id is a UUID")?;
                match reason {
                    // The checkout woke its saga in the transaction that placed the order.
                    "order_placed" => placed.push(order_id),
                    _ => {
                        wakes.insert(order_id, reason);
                    }
                }
            }
        }
        saga_due::start(conn, &placed).await?;
        let (ids, reasons): (Vec<Uuid>, Vec<&str>) = wakes.into_iter().unzip();
        saga_due::wake(conn, &ids, &reasons).await
    }
}

/// Why `event` wakes its order's saga, if it does.
fn reason_to_wake(event: &StoredEvent) -> anyhow::Result<Option<&'static str>> {
    let reason = match event.event_type.as_str() {
        "OrderPlaced" => "order_placed",
        "OrderCancelled" => "order_cancelled",
        "OrderReturned" => "order_returned",
        // Its return window starts: the saga notes when the sale becomes final.
        "OrderDelivered" => "order_delivered",
        _ => return Ok(None),
    };
    // Decoding checks the payload is an order event of a known shape before acting on it.
    let _: OrderEvent = event.decode().context("decoding an order event")?;
    Ok(Some(reason))
}

//! `saga_triggers`: the projection that wakes a checkout saga when its order is placed,
//! cancelled or returned. Running on the projection runtime, a wake-up is written in the same
//! transaction as the runtime's bookkeeping: no order event is lost or handled twice.

use anyhow::Context;
use commerce_domain::order::OrderEvent;
use commerce_projections::{Projection, StoredEvent};
use sqlx::PgConnection;

use crate::deadlines;

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
        let reason = match event.event_type.as_str() {
            "OrderPlaced" => "order_placed",
            "OrderCancelled" => "order_cancelled",
            "OrderReturned" => "order_returned",
            _ => return Ok(()),
        };
        // Decoding checks the payload is an order event of a known shape before acting on it.
        let _: OrderEvent =
            serde_json::from_value(event.payload.clone()).context("decoding an order event")?;
        let order_id: uuid::Uuid = event
            .aggregate_id
            .parse()
            .context("an order id is a UUID")?;
        deadlines::wake(conn, order_id, reason).await
    }
}

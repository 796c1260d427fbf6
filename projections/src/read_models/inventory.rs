//! `inventory`: stock levels per SKU (`rm_inventory`). Every inventory event carries the levels it
//! left, so applying one is a plain upsert.

use anyhow::Context;
use commerce_domain::inventory::InventoryEvent;
use sqlx::PgConnection;

use crate::{Projection, StoredEvent};

/// The `inventory` projection.
pub struct InventoryLevels;

impl Projection for InventoryLevels {
    fn name(&self) -> &'static str {
        "inventory"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["inventory"]
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        apply(conn, event).await
    }
}

async fn apply(db: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
    let levels = match serde_json::from_value(event.payload.clone())
        .context("decoding an inventory event")?
    {
        InventoryEvent::Restocked { levels, .. }
        | InventoryEvent::Adjusted { levels, .. }
        | InventoryEvent::Reserved { levels, .. }
        | InventoryEvent::Released { levels, .. }
        | InventoryEvent::Committed { levels, .. }
        | InventoryEvent::Restored { levels, .. } => levels,
    };
    sqlx::query(
        "INSERT INTO rm_inventory (sku, on_hand, reserved, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (sku) DO UPDATE SET on_hand = $2, reserved = $3, updated_at = $4",
    )
    .bind(&event.aggregate_id)
    .bind(levels.on_hand)
    .bind(levels.reserved)
    .bind(event.recorded_at)
    .execute(&mut *db)
    .await?;
    Ok(())
}

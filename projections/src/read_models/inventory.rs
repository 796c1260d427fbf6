//! `inventory`: stock levels per SKU (`rm_inventory`). Every inventory event carries the levels it
//! left, so applying one is a plain upsert.

use std::collections::BTreeMap;

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

    fn tables(&self) -> &'static [&'static str] {
        &["rm_inventory"]
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        apply_batch(conn, std::slice::from_ref(event)).await
    }

    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> anyhow::Result<()> {
        apply_batch(conn, events).await
    }
}

/// The last levels of each SKU in the batch, written in one statement.
async fn apply_batch(db: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
    let mut latest = BTreeMap::new();
    for event in events {
        let levels = match event.decode().context("decoding an inventory event")? {
            InventoryEvent::Restocked { levels, .. }
            | InventoryEvent::Adjusted { levels, .. }
            | InventoryEvent::Reserved { levels, .. }
            | InventoryEvent::Released { levels, .. }
            | InventoryEvent::Committed { levels, .. }
            | InventoryEvent::Restored { levels, .. }
            | InventoryEvent::Settled { levels, .. } => levels,
        };
        latest.insert(event.aggregate_id.as_str(), (levels, event.recorded_at));
    }
    let (mut skus, mut on_hand, mut reserved, mut updated_at) = (vec![], vec![], vec![], vec![]);
    for (sku, (levels, at)) in latest {
        skus.push(sku);
        on_hand.push(levels.on_hand);
        reserved.push(levels.reserved);
        updated_at.push(at);
    }
    sqlx::query(
        "INSERT INTO rm_inventory (sku, on_hand, reserved, updated_at) \
         SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::timestamptz[]) \
         ON CONFLICT (sku) DO UPDATE SET on_hand = EXCLUDED.on_hand, reserved = EXCLUDED.reserved, \
           updated_at = EXCLUDED.updated_at",
    )
    .bind(&skus)
    .bind(&on_hand)
    .bind(&reserved)
    .bind(&updated_at)
    .execute(&mut *db)
    .await?;
    Ok(())
}

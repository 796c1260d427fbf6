//! A delivery's body, built from its event at each attempt (never from a read model):
//! `{type, event_id, position, occurred_at, aggregate_type, aggregate_id, sequence, data}`.
//!
//! Personal data is opened with its person's key at that moment, so a person forgotten since
//! the event was recorded (or since a failed attempt) is `"forgotten"` in every later attempt
//! and replay, as in every read model.

use anyhow::Context;
use chrono::SecondsFormat;
use commerce_projections::envelope::COLUMNS;
use commerce_projections::StoredEvent;
use serde_json::json;
use sqlx::PgPool;

use crate::catalogue::type_name;
use crate::fan_out::{event_id, seller_of};
use crate::scope;
use crate::subscription::Owner;

/// The event a delivery sends, read from the store.
pub async fn event(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
) -> anyhow::Result<StoredEvent> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3"
    ))
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(sequence)
    .fetch_one(pool)
    .await
    .context("reading the event to deliver")
}

/// The body of `event`'s delivery to a webhook of `owner`.
pub async fn body(pool: &PgPool, event: &StoredEvent, owner: Owner) -> anyhow::Result<Vec<u8>> {
    let mut data = scope::data_of(&event.payload, &event.event_type);
    commerce_store::keys::reveal(pool, &mut data).await?;
    if let Some(seller) = seller_of(owner) {
        data = scope::for_seller(&event.event_type, data, seller);
    }
    let body = json!({
        "type": type_name(&event.aggregate_type, &event.event_type),
        "event_id": event_id(&event.aggregate_type, &event.aggregate_id, event.sequence),
        "position": event.position,
        "occurred_at": event.recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "aggregate_type": event.aggregate_type,
        "aggregate_id": event.aggregate_id,
        "sequence": event.sequence,
        "data": data,
    });
    Ok(serde_json::to_vec(&body)?)
}

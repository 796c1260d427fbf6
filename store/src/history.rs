//! The event store as operators read it: recorded events (one stream, or the whole store after a
//! position), brought to their current version as every other reader sees them, and any stream,
//! by aggregate type name, folded up to a point through its own aggregate ([`fold_as_of`]), its
//! state as JSON.

use anyhow::Context;
use chrono::{DateTime, Utc};
use commerce_domain::account::Account;
use commerce_domain::cart::Cart;
use commerce_domain::checkout::CheckoutSaga;
use commerce_domain::inventory::Inventory;
use commerce_domain::order::Order;
use commerce_domain::payment::Payment;
use commerce_domain::product::Product;
use commerce_domain::review::Review;
use cqrs_es::Aggregate;
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgExecutor, PgPool};

use crate::repository::{fold_as_of, AsOf, Folded};

/// The aggregate types the store holds streams of: every `Aggregate::TYPE` of the domain.
pub const AGGREGATE_TYPES: &[&str] = &[
    Account::TYPE,
    Cart::TYPE,
    CheckoutSaga::TYPE,
    Inventory::TYPE,
    Order::TYPE,
    Payment::TYPE,
    Product::TYPE,
    Review::TYPE,
];

/// Whether `aggregate_type` names an aggregate of the domain.
pub fn is_aggregate_type(aggregate_type: &str) -> bool {
    AGGREGATE_TYPES.contains(&aggregate_type)
}

/// The stream `aggregate_type`/`id` folded up to `as_of`, its state serialised as JSON; `None`
/// for an aggregate type the domain does not have, or when no event of the stream is at or
/// before `as_of`.
pub async fn state_as_of(
    pool: &PgPool,
    aggregate_type: &str,
    id: &str,
    as_of: AsOf,
) -> anyhow::Result<Option<Folded<serde_json::Value>>> {
    match aggregate_type {
        Account::TYPE => as_json::<Account>(pool, id, as_of).await,
        Cart::TYPE => as_json::<Cart>(pool, id, as_of).await,
        CheckoutSaga::TYPE => as_json::<CheckoutSaga>(pool, id, as_of).await,
        Inventory::TYPE => as_json::<Inventory>(pool, id, as_of).await,
        Order::TYPE => as_json::<Order>(pool, id, as_of).await,
        Payment::TYPE => as_json::<Payment>(pool, id, as_of).await,
        Product::TYPE => as_json::<Product>(pool, id, as_of).await,
        Review::TYPE => as_json::<Review>(pool, id, as_of).await,
        _ => Ok(None),
    }
}

async fn as_json<A: Aggregate>(
    pool: &PgPool,
    id: &str,
    as_of: AsOf,
) -> anyhow::Result<Option<Folded<serde_json::Value>>> {
    let Some(folded) = fold_as_of::<A>(pool, id, as_of).await? else {
        return Ok(None);
    };
    Ok(Some(Folded {
        state: serde_json::to_value(&folded.state)?,
        version: folded.version,
        position: folded.position,
        recorded_at: folded.recorded_at,
    }))
}

/// An event as recorded, with its metadata.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct RecordedEvent {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub position: i64,
    pub event_type: String,
    pub event_version: String,
    pub recorded_at: DateTime<Utc>,
    pub payload: Value,
    pub metadata: Value,
}

impl RecordedEvent {
    /// The event at its type's current version, through the domain's upcaster chain: what an
    /// upcaster drops (a payment token of an old `OrderPlaced`) is not shown to operators
    /// either. An event this engine cannot bring up (a newer engine wrote it) is shown as
    /// recorded, with its version, rather than hiding the page around it.
    fn upcast(mut self) -> Self {
        match commerce_domain::upcast::upcast(
            &self.aggregate_type,
            &self.event_type,
            &self.event_version,
            self.payload.clone(),
        ) {
            Ok((version, payload)) => {
                self.event_version = version;
                self.payload = payload;
            }
            Err(error) => {
                tracing::warn!(%error, position = self.position, "showing an event as recorded")
            }
        }
        self
    }
}

const COLUMNS: &str =
    "aggregate_type, aggregate_id, sequence, position, event_type, event_version, \
     recorded_at, payload, metadata";

/// The stream's last sequence; `None` for a stream without events.
pub async fn stream_version(
    executor: impl PgExecutor<'_>,
    aggregate_type: &str,
    id: &str,
) -> anyhow::Result<Option<i64>> {
    sqlx::query_scalar(
        "SELECT max(sequence) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2",
    )
    .bind(aggregate_type)
    .bind(id)
    .fetch_one(executor)
    .await
    .context("reading a stream's version")
}

/// Up to `limit` events of the stream after sequence `after`, oldest first.
pub async fn stream_events(
    executor: impl PgExecutor<'_>,
    aggregate_type: &str,
    id: &str,
    after: i64,
    limit: i64,
) -> anyhow::Result<Vec<RecordedEvent>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 \
         ORDER BY sequence LIMIT $4"
    ))
    .bind(aggregate_type)
    .bind(id)
    .bind(after)
    .bind(limit)
    .fetch_all(executor)
    .await
    .context("reading a stream's events")
    .map(|events: Vec<RecordedEvent>| events.into_iter().map(RecordedEvent::upcast).collect())
}

/// Up to `limit` events with a position above `after`, in position order, of one aggregate type
/// or of all: what a tail of the store shows next.
///
/// Positions are handed out before commit, so a later position can commit first. Only events of
/// transactions below the commit horizon (older than every one still running) are read, as the
/// relay reads: a transaction still writing holds back every younger one, so a tail does not
/// move past its events before they are visible (the usual case: ids and positions are handed out
/// in about the same order).
pub async fn events_after(
    executor: impl PgExecutor<'_>,
    after: i64,
    aggregate_type: Option<&str>,
    limit: i64,
) -> anyhow::Result<Vec<RecordedEvent>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM events \
         WHERE position > $1 AND ($2::text IS NULL OR aggregate_type = $2) \
           AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY position LIMIT $3"
    ))
    .bind(after)
    .bind(aggregate_type)
    .bind(limit)
    .fetch_all(executor)
    .await
    .context("reading events after a position")
    .map(|events: Vec<RecordedEvent>| events.into_iter().map(RecordedEvent::upcast).collect())
}

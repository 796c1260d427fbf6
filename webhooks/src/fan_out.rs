//! From the event stream to deliveries: the `webhooks` projection, one more durable consumer
//! of the stream. In the transaction of each batch it records, for every event and every
//! webhook that takes it, one pending delivery; the projection runtime's bookkeeping (acked
//! after commit, duplicates skipped by per-aggregate sequence, gaps healed from the store)
//! makes that exactly once per event and webhook, whatever crashes in between, and keeps each
//! aggregate's events in order. The delivery worker ([`crate::delivery`]) sends them.
//!
//! A replay ([`replay`]) enqueues the events of the store from a position through the same
//! [`enqueue`], so a replayed event reaches a webhook under the same `webhook-id`.

use std::collections::HashMap;

use anyhow::Context;
use commerce_domain::AccountId;
use commerce_projections::envelope::COLUMNS;
use commerce_projections::{Projection, StoredEvent};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::catalogue;
use crate::scope;
use crate::subscription::{self, Owner, Webhook};

/// The projection's name: its durable consumer and bookkeeping.
pub const NAME: &str = "webhooks";

/// Namespace of event ids (`event_id` of a delivery's body): the v5 UUID of
/// `<aggregate type>:<aggregate id>:<sequence>`.
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5c0f_3b8e_4f6a_4d3e_9a1c_7e2b_6d90_a1f4);

/// The id of an event, the same however often it is delivered.
pub fn event_id(aggregate_type: &str, aggregate_id: &str, sequence: i64) -> Uuid {
    Uuid::new_v5(
        &EVENT_ID_NAMESPACE,
        format!("{aggregate_type}:{aggregate_id}:{sequence}").as_bytes(),
    )
}

/// The `webhook-id` of an event's deliveries to one webhook: every attempt, retry and replay
/// carries it, and no other event's delivery to that webhook does.
pub fn message_id(
    webhook: Uuid,
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
) -> String {
    let id = Uuid::new_v5(
        &webhook,
        format!("{aggregate_type}:{aggregate_id}:{sequence}").as_bytes(),
    );
    format!("msg_{}", id.simple())
}

/// The fan-out projection.
pub struct WebhookFanOut;

impl Projection for WebhookFanOut {
    fn name(&self) -> &'static str {
        NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[]
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        fan_out(conn, std::slice::from_ref(event)).await
    }

    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> anyhow::Result<()> {
        fan_out(conn, events).await
    }
}

/// Records a delivery of each event to every webhook that subscribed before it was recorded
/// and takes it.
async fn fan_out(conn: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
    let webhooks = subscription::active(&mut *conn).await?;
    if webhooks.is_empty() {
        return Ok(());
    }
    enqueue(conn, &webhooks, events, Since::Subscribed).await?;
    Ok(())
}

/// Which events a webhook takes in [`enqueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// Those recorded since it subscribed (the live fan-out).
    Subscribed,
    /// Any (a replay).
    Anytime,
}

/// Records a pending delivery of each event to each of `webhooks` that takes it; returns how
/// many.
pub async fn enqueue(
    conn: &mut PgConnection,
    webhooks: &[Webhook],
    events: &[StoredEvent],
    since: Since,
) -> anyhow::Result<u64> {
    let sellers_of = sellers_of(conn, webhooks, events).await?;
    let mut rows = DeliveryRows::default();
    for event in events {
        for webhook in webhooks {
            if since == Since::Subscribed && event.recorded_at < webhook.created_at {
                continue;
            }
            if !webhook.event_types.iter().any(|pattern| {
                catalogue::matches(pattern, &event.aggregate_type, &event.event_type)
            }) {
                continue;
            }
            if let Owner::Seller(seller) = webhook.owner {
                let concerned = scope::subject_of(event)
                    .and_then(|subject| sellers_of.get(&subject))
                    .is_some_and(|sellers| sellers.contains(&seller));
                if !concerned {
                    continue;
                }
            }
            rows.push(webhook.webhook_id, event);
        }
    }
    rows.insert(conn).await
}

/// The sellers of every subject the events are about, when a seller's webhook may want them.
async fn sellers_of(
    conn: &mut PgConnection,
    webhooks: &[Webhook],
    events: &[StoredEvent],
) -> anyhow::Result<HashMap<scope::Subject, Vec<Uuid>>> {
    if !webhooks.iter().any(|w| matches!(w.owner, Owner::Seller(_))) {
        return Ok(HashMap::new());
    }
    scope::sellers_of(conn, events).await
}

/// Deliveries to insert, column by column.
#[derive(Default)]
struct DeliveryRows {
    webhook_ids: Vec<Uuid>,
    message_ids: Vec<String>,
    aggregate_types: Vec<String>,
    aggregate_ids: Vec<String>,
    sequences: Vec<i64>,
    positions: Vec<i64>,
    event_types: Vec<String>,
}

impl DeliveryRows {
    fn push(&mut self, webhook: Uuid, event: &StoredEvent) {
        self.webhook_ids.push(webhook);
        self.message_ids.push(message_id(
            webhook,
            &event.aggregate_type,
            &event.aggregate_id,
            event.sequence,
        ));
        self.aggregate_types.push(event.aggregate_type.clone());
        self.aggregate_ids.push(event.aggregate_id.clone());
        self.sequences.push(event.sequence);
        self.positions.push(event.position);
        self.event_types.push(event.event_type.clone());
    }

    /// One statement; `WITH ORDINALITY` keeps the rows' order, so `delivery_id` follows each
    /// aggregate's sequence.
    async fn insert(self, conn: &mut PgConnection) -> anyhow::Result<u64> {
        if self.webhook_ids.is_empty() {
            return Ok(0);
        }
        let inserted = sqlx::query(
            "INSERT INTO webhook_deliveries \
             (webhook_id, message_id, aggregate_type, aggregate_id, sequence, position, event_type) \
             SELECT w, m, t, a, s, p, e FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], \
             $5::bigint[], $6::bigint[], $7::text[]) WITH ORDINALITY AS d(w, m, t, a, s, p, e, n) \
             ORDER BY n",
        )
        .bind(&self.webhook_ids)
        .bind(&self.message_ids)
        .bind(&self.aggregate_types)
        .bind(&self.aggregate_ids)
        .bind(&self.sequences)
        .bind(&self.positions)
        .bind(&self.event_types)
        .execute(&mut *conn)
        .await
        .context("recording deliveries")?
        .rows_affected();
        Ok(inserted)
    }
}

/// Events read from the store per transaction of a replay.
const REPLAY_BATCH: i64 = 1000;

/// Enqueues, for one webhook, every event it takes from `from_position` up to the last one
/// recorded when the replay began, in order of position (each aggregate's in sequence order):
/// the same `webhook-id`s as their first deliveries. Returns how many were enqueued.
pub async fn replay(pool: &PgPool, webhook: &Webhook, from_position: i64) -> anyhow::Result<u64> {
    let (last,): (Option<i64>,) = sqlx::query_as("SELECT max(position) FROM events")
        .fetch_one(pool)
        .await
        .context("reading the last position")?;
    let Some(last) = last else { return Ok(0) };
    let webhooks = std::slice::from_ref(webhook);
    let mut after = from_position.saturating_sub(1);
    let mut enqueued = 0;
    while after < last {
        let mut tx = pool.begin().await?;
        let events: Vec<StoredEvent> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM events \
             WHERE position > $1 AND position <= $2 ORDER BY position LIMIT $3"
        ))
        .bind(after)
        .bind(last)
        .bind(REPLAY_BATCH)
        .fetch_all(&mut *tx)
        .await
        .context("reading events to replay")?;
        let Some(end) = events.last().map(|e| e.position) else {
            break;
        };
        enqueued += enqueue(&mut tx, webhooks, &events, Since::Anytime).await?;
        tx.commit().await?;
        after = end;
    }
    Ok(enqueued)
}

/// Which seller a webhook's deliveries are limited to, if any.
pub fn seller_of(owner: Owner) -> Option<AccountId> {
    match owner {
        Owner::Seller(id) => Some(AccountId(id)),
        Owner::Admin(_) => None,
    }
}

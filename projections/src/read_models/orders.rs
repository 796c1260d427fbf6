//! `orders`: every order with the timeline of its status changes (`rm_orders`); also serves the
//! purchase history and the sellers' queue.

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use commerce_domain::order::OrderEvent;
use serde_json::{json, Value};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{fold_ahead, Fold, FoldedBatch, Projection, StoredEvent};

/// The `orders` projection.
pub struct Orders;

impl Projection for Orders {
    fn name(&self) -> &'static str {
        "orders"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["order"]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_orders"]
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        self.apply_batch(conn, std::slice::from_ref(event)).await
    }

    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> anyhow::Result<()> {
        Changes::fold(events)?.write(conn).await
    }

    fn fold_batch(&self, events: &[StoredEvent]) -> Option<anyhow::Result<Box<dyn FoldedBatch>>> {
        fold_ahead::<Changes>(events)
    }
}

/// An order placed in this batch, with what happened to it since.
struct NewOrder {
    buyer_id: Uuid,
    seller_ids: Vec<Uuid>,
    lines: Value,
    /// `subtotal`, `discount`, `shipping`, `tax` and `total`, as JSON money.
    prices: [Value; 5],
    promotion_code: Option<String>,
    shipping_method_id: Option<Uuid>,
    shipping_address: Value,
    placed_at: DateTime<Utc>,
    later: Transitions,
}

/// Status changes of one order, in order.
#[derive(Default)]
struct Transitions {
    /// Timeline entries, oldest first; the last one's status is the order's.
    timeline: Vec<Value>,
    status: Option<&'static str>,
    updated_at: Option<DateTime<Utc>>,
    cancellation_reason: Option<String>,
    shipment: Option<Value>,
}

/// A batch folded per order, so that one statement inserts the new orders and one updates the
/// others (each order touched once).
#[derive(Default)]
struct Changes {
    placed: BTreeMap<Uuid, NewOrder>,
    updated: BTreeMap<Uuid, Transitions>,
}

impl Fold for Changes {
    fn add(&mut self, event: &StoredEvent) -> anyhow::Result<()> {
        let order_event: OrderEvent = event.decode().context("decoding an order event")?;
        let order_id: Uuid = event
            .aggregate_id
            .parse()
            .context("an order id is a UUID")?;
        let at = event.recorded_at;
        let (status, cancellation_reason, shipment) = match order_event {
            OrderEvent::OrderPlaced {
                buyer_id,
                lines,
                subtotal,
                discount,
                shipping,
                tax,
                total,
                promotion_code,
                shipping_method_id,
                shipping_address,
                ..
            } => {
                let mut seller_ids: Vec<Uuid> = lines.iter().map(|l| l.seller_id.0).collect();
                seller_ids.sort();
                seller_ids.dedup();
                let mut later = Transitions::default();
                later.record(at, "pending", None, None);
                self.placed.insert(
                    order_id,
                    NewOrder {
                        buyer_id: buyer_id.0,
                        seller_ids,
                        lines: json!(lines),
                        prices: [subtotal, discount, shipping, tax, total].map(|m| json!(m)),
                        promotion_code,
                        shipping_method_id: shipping_method_id.map(|id| id.0),
                        shipping_address: json!(shipping_address),
                        placed_at: at,
                        later,
                    },
                );
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
            // Not a step of the order's status: it stays delivered, for good.
            OrderEvent::ReturnsClosed => return Ok(()),
            OrderEvent::OrderReturned { .. } => ("returned", None, None),
            OrderEvent::OrderRefunded => ("refunded", None, None),
            OrderEvent::OrderCancelled { reason, .. } => ("cancelled", Some(reason), None),
        };
        let transitions = match self.placed.get_mut(&order_id) {
            Some(placed) => &mut placed.later,
            None => self.updated.entry(order_id).or_default(),
        };
        transitions.record(at, status, cancellation_reason, shipment);
        Ok(())
    }

    async fn write(self, db: &mut PgConnection) -> anyhow::Result<()> {
        if !self.placed.is_empty() {
            let mut rows = NewOrderColumns::default();
            for (order_id, order) in self.placed {
                rows.push(order_id, order);
            }
            rows.insert(db).await?;
        }
        if !self.updated.is_empty() {
            let expected = self.updated.len() as u64;
            let mut rows = TransitionColumns::default();
            for (order_id, transitions) in self.updated {
                rows.push(order_id, transitions);
            }
            let updated = rows.update(db).await?;
            anyhow::ensure!(
                updated == expected,
                "{} of the batch's orders have no row to update",
                expected - updated
            );
        }
        Ok(())
    }
}

impl Transitions {
    fn record(
        &mut self,
        at: DateTime<Utc>,
        status: &'static str,
        cancellation_reason: Option<String>,
        shipment: Option<Value>,
    ) {
        self.timeline.push(json!({ "status": status, "at": at }));
        self.status = Some(status);
        self.updated_at = Some(at);
        self.cancellation_reason = cancellation_reason.or(self.cancellation_reason.take());
        self.shipment = shipment.or(self.shipment.take());
    }
}

/// The columns of `rm_orders` for orders placed in a batch, as arrays for `UNNEST`.
#[derive(Default)]
struct NewOrderColumns {
    order_ids: Vec<Uuid>,
    buyer_ids: Vec<Uuid>,
    seller_ids: Vec<Value>,
    statuses: Vec<&'static str>,
    lines: Vec<Value>,
    subtotals: Vec<Value>,
    discounts: Vec<Value>,
    shippings: Vec<Value>,
    taxes: Vec<Value>,
    totals: Vec<Value>,
    promotion_codes: Vec<Option<String>>,
    shipping_method_ids: Vec<Option<Uuid>>,
    addresses: Vec<Value>,
    timelines: Vec<Value>,
    reasons: Vec<Option<String>>,
    shipments: Vec<Option<Value>>,
    placed_at: Vec<DateTime<Utc>>,
    updated_at: Vec<DateTime<Utc>>,
}

impl NewOrderColumns {
    fn push(&mut self, order_id: Uuid, order: NewOrder) {
        let later = order.later;
        self.order_ids.push(order_id);
        self.buyer_ids.push(order.buyer_id);
        self.seller_ids.push(json!(order.seller_ids));
        self.statuses.push(later.status.unwrap_or("pending"));
        self.lines.push(order.lines);
        let [subtotal, discount, shipping, tax, total] = order.prices;
        self.subtotals.push(subtotal);
        self.discounts.push(discount);
        self.shippings.push(shipping);
        self.taxes.push(tax);
        self.totals.push(total);
        self.promotion_codes.push(order.promotion_code);
        self.shipping_method_ids.push(order.shipping_method_id);
        self.addresses.push(order.shipping_address);
        self.timelines.push(Value::Array(later.timeline));
        self.reasons.push(later.cancellation_reason);
        self.shipments.push(later.shipment);
        self.placed_at.push(order.placed_at);
        self.updated_at
            .push(later.updated_at.unwrap_or(order.placed_at));
    }

    async fn insert(self, db: &mut PgConnection) -> anyhow::Result<()> {
        // Seller ids travel as a JSON array per order: UNNEST cannot take an array of arrays
        // of different lengths.
        sqlx::query(
            "INSERT INTO rm_orders (order_id, buyer_id, seller_ids, status, lines, total, \
                                    shipping_address, timeline, cancellation_reason, shipment, \
                                    placed_at, updated_at, subtotal, discount, shipping, tax, \
                                    promotion_code, shipping_method_id) \
             SELECT o, b, ARRAY(SELECT jsonb_array_elements_text(s)::uuid), st, l, t, a, tl, r, sh, p, u, \
                    sub, d, shp, tx, pc, sm \
             FROM UNNEST($1::uuid[], $2::uuid[], $3::jsonb[], $4::text[], $5::jsonb[], $6::jsonb[], \
                         $7::jsonb[], $8::jsonb[], $9::text[], $10::jsonb[], $11::timestamptz[], \
                         $12::timestamptz[], $13::jsonb[], $14::jsonb[], $15::jsonb[], $16::jsonb[], \
                         $17::text[], $18::uuid[]) \
                  AS n(o, b, s, st, l, t, a, tl, r, sh, p, u, sub, d, shp, tx, pc, sm)",
        )
        .bind(&self.order_ids)
        .bind(&self.buyer_ids)
        .bind(&self.seller_ids)
        .bind(&self.statuses)
        .bind(&self.lines)
        .bind(&self.totals)
        .bind(&self.addresses)
        .bind(&self.timelines)
        .bind(&self.reasons)
        .bind(&self.shipments)
        .bind(&self.placed_at)
        .bind(&self.updated_at)
        .bind(&self.subtotals)
        .bind(&self.discounts)
        .bind(&self.shippings)
        .bind(&self.taxes)
        .bind(&self.promotion_codes)
        .bind(&self.shipping_method_ids)
        .execute(&mut *db)
        .await?;
        Ok(())
    }
}

/// Status changes of orders placed before a batch, as arrays for `UNNEST`.
#[derive(Default)]
struct TransitionColumns {
    order_ids: Vec<Uuid>,
    statuses: Vec<&'static str>,
    timelines: Vec<Value>,
    reasons: Vec<Option<String>>,
    shipments: Vec<Option<Value>>,
    updated_at: Vec<DateTime<Utc>>,
}

impl TransitionColumns {
    fn push(&mut self, order_id: Uuid, transitions: Transitions) {
        self.order_ids.push(order_id);
        self.statuses.push(transitions.status.unwrap_or("pending"));
        self.timelines.push(Value::Array(transitions.timeline));
        self.reasons.push(transitions.cancellation_reason);
        self.shipments.push(transitions.shipment);
        self.updated_at
            .push(transitions.updated_at.unwrap_or(DateTime::<Utc>::MIN_UTC));
    }

    /// The number of orders updated.
    async fn update(self, db: &mut PgConnection) -> anyhow::Result<u64> {
        let done = sqlx::query(
            "UPDATE rm_orders SET status = u.st, timeline = rm_orders.timeline || u.tl, \
                 updated_at = u.at, cancellation_reason = COALESCE(u.r, rm_orders.cancellation_reason), \
                 shipment = COALESCE(u.sh, rm_orders.shipment) \
             FROM UNNEST($1::uuid[], $2::text[], $3::jsonb[], $4::text[], $5::jsonb[], $6::timestamptz[]) \
                  AS u(o, st, tl, r, sh, at) \
             WHERE rm_orders.order_id = u.o",
        )
        .bind(&self.order_ids)
        .bind(&self.statuses)
        .bind(&self.timelines)
        .bind(&self.reasons)
        .bind(&self.shipments)
        .bind(&self.updated_at)
        .execute(&mut *db)
        .await?;
        Ok(done.rows_affected())
    }
}

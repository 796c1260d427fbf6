//! What must hold once the engine has settled, checked against the event store itself (folded
//! with the engine's own aggregates), the read models and the sandbox gateway's ledger.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use commerce_domain::checkout::CheckoutSaga;
use commerce_domain::inventory::Inventory;
use commerce_domain::order::{Order, OrderStatus};
use commerce_domain::payment::{Payment, PaymentStatus};
use commerce_sagas::gateway::{PaymentStatus as SandboxStatus, PaymentView};
use commerce_store::Repository;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::client::Ack;
use crate::workload::BUYER_CANCEL_REASON;

/// One event of a saga's stream.
#[derive(Debug, Clone)]
pub struct SagaStep {
    pub sequence: i64,
    pub position: i64,
    pub event_type: String,
    pub payload: Value,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
}

impl SagaStep {
    /// `confirmed`, `cancelled` or `refunded` for a `SagaCompleted`.
    fn outcome(&self) -> Option<&str> {
        (self.event_type == "SagaCompleted")
            .then(|| self.payload["SagaCompleted"]["outcome"].as_str())
            .flatten()
    }

    fn describe(&self) -> String {
        match self.outcome() {
            Some(outcome) => format!("#{} SagaCompleted({outcome})", self.sequence),
            None => match self.payload[&self.event_type].get("sku") {
                Some(sku) => format!(
                    "#{} {}({})",
                    self.sequence,
                    self.event_type,
                    sku.as_str().unwrap_or("?")
                ),
                None => format!("#{} {}", self.sequence, self.event_type),
            },
        }
    }
}

/// Everything the store says, folded.
pub struct StoreView {
    pub orders: BTreeMap<Uuid, Order>,
    pub payments: BTreeMap<Uuid, Payment>,
    /// The payment of each order that has one.
    pub payment_of: BTreeMap<Uuid, Uuid>,
    pub inventory: BTreeMap<String, Inventory>,
    pub sagas: BTreeMap<Uuid, Vec<SagaStep>>,
    /// Units restocked per SKU, summed over `Restocked` events.
    pub restocked: BTreeMap<String, i64>,
    pub deadlines: BTreeMap<Uuid, (String, Option<String>)>,
}

async fn ids(pool: &PgPool, aggregate_type: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = $1 ORDER BY 1",
    )
    .bind(aggregate_type)
    .fetch_all(pool)
    .await
    .expect("listing streams")
}

impl StoreView {
    pub async fn load(pool: &PgPool) -> StoreView {
        // Fresh repositories: nothing cached, every stream folded from the store.
        let orders_repo: Repository<Order> = Repository::new(pool.clone());
        let payments_repo: Repository<Payment> = Repository::new(pool.clone());
        let inventory_repo: Repository<Inventory> = Repository::new(pool.clone());
        let mut orders = BTreeMap::new();
        for id in ids(pool, "order").await {
            let state = orders_repo.load(&id).await.expect("folding an order").state;
            orders.insert(id.parse().expect("an order id"), state);
        }
        let mut payments = BTreeMap::new();
        let mut payment_of = BTreeMap::new();
        for id in ids(pool, "payment").await {
            let state = payments_repo
                .load(&id)
                .await
                .expect("folding a payment")
                .state;
            let payment_id: Uuid = id.parse().expect("a payment id");
            if let Some(order) = state.order_id {
                payment_of.insert(order.0, payment_id);
            }
            payments.insert(payment_id, state);
        }
        let mut inventory = BTreeMap::new();
        for sku in ids(pool, "inventory").await {
            let state = inventory_repo
                .load(&sku)
                .await
                .expect("folding a SKU's inventory")
                .state;
            inventory.insert(sku, state);
        }
        let rows: Vec<(String, i64, i64, String, Value, chrono::DateTime<chrono::Utc>)> =
            sqlx::query_as(
                "SELECT aggregate_id, sequence, position, event_type, payload, recorded_at FROM events \
                 WHERE aggregate_type = 'checkout_saga' ORDER BY aggregate_id, sequence",
            )
            .fetch_all(pool)
            .await
            .expect("reading the saga streams");
        let mut sagas: BTreeMap<Uuid, Vec<SagaStep>> = BTreeMap::new();
        for (id, sequence, position, event_type, payload, recorded_at) in rows {
            sagas
                .entry(id.parse().expect("a saga id"))
                .or_default()
                .push(SagaStep {
                    sequence,
                    position,
                    event_type,
                    payload,
                    recorded_at,
                });
        }
        let restocked: Vec<(String, i64)> = sqlx::query_as(
            "SELECT aggregate_id, COALESCE(SUM((payload->'Restocked'->>'quantity')::bigint), 0)::bigint \
             FROM events WHERE aggregate_type = 'inventory' AND event_type = 'Restocked' GROUP BY 1",
        )
        .fetch_all(pool)
        .await
        .expect("summing restocks");
        let deadlines: Vec<(Uuid, String, Option<String>)> =
            sqlx::query_as("SELECT saga_id, reason, locked_by FROM saga_deadlines")
                .fetch_all(pool)
                .await
                .expect("reading saga_deadlines");
        StoreView {
            orders,
            payments,
            payment_of,
            inventory,
            sagas,
            restocked: restocked.into_iter().collect(),
            deadlines: deadlines
                .into_iter()
                .map(|(id, reason, by)| (id, (reason, by)))
                .collect(),
        }
    }

    /// The outcome of the saga's last `SagaCompleted`, if any.
    pub fn saga_outcome(&self, order: &Uuid) -> Option<&str> {
        self.sagas
            .get(order)
            .and_then(|steps| steps.iter().rev().find_map(SagaStep::outcome))
    }

    /// Orders still in flight: not confirmed or cancelled, or their saga not ended to match.
    pub fn unsettled(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (id, order) in &self.orders {
            let status = order.status.map_or("none", OrderStatus::as_str);
            let outcome = self.saga_outcome(id);
            let settled = matches!(
                (status, outcome),
                ("confirmed", Some("confirmed")) | ("cancelled", Some("cancelled"))
            );
            if !settled {
                out.push(format!(
                    "order {id}: status {status}, saga outcome {}",
                    outcome.unwrap_or("none (not completed)")
                ));
            }
        }
        out
    }
}

/// The read models as the query side serves them.
pub struct ReadModels {
    pub orders: BTreeMap<Uuid, String>,
    pub inventory: BTreeMap<String, (i64, i64)>,
    pub payments: BTreeMap<Uuid, String>,
}

impl ReadModels {
    pub async fn load(pool: &PgPool) -> ReadModels {
        let orders: Vec<(Uuid, String)> = sqlx::query_as("SELECT order_id, status FROM rm_orders")
            .fetch_all(pool)
            .await
            .expect("reading rm_orders");
        let inventory: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT sku, on_hand, reserved FROM rm_inventory")
                .fetch_all(pool)
                .await
                .expect("reading rm_inventory");
        let payments: Vec<(Uuid, String)> =
            sqlx::query_as("SELECT payment_id, status FROM rm_payments")
                .fetch_all(pool)
                .await
                .expect("reading rm_payments");
        ReadModels {
            orders: orders.into_iter().collect(),
            inventory: inventory
                .into_iter()
                .map(|(sku, on_hand, reserved)| (sku, (on_hand, reserved)))
                .collect(),
            payments: payments.into_iter().collect(),
        }
    }

    /// Where the read models differ from the fold of the store.
    pub fn differences(&self, store: &StoreView) -> Vec<String> {
        let mut out = Vec::new();
        for (id, order) in &store.orders {
            let folded = order.status.map_or("none", OrderStatus::as_str);
            match self.orders.get(id) {
                Some(status) if status == folded => {}
                Some(status) => out.push(format!(
                    "rm_orders {id}: status {status}, the store says {folded}"
                )),
                None => out.push(format!("rm_orders {id}: missing, the store says {folded}")),
            }
        }
        for id in self
            .orders
            .keys()
            .filter(|id| !store.orders.contains_key(id))
        {
            out.push(format!("rm_orders {id}: no such order in the store"));
        }
        for (sku, inventory) in &store.inventory {
            let folded = (inventory.levels.on_hand, inventory.levels.reserved);
            match self.inventory.get(sku) {
                Some(levels) if *levels == folded => {}
                Some((on_hand, reserved)) => out.push(format!(
                    "rm_inventory {sku}: on_hand {on_hand} reserved {reserved}, the store says on_hand {} reserved {}",
                    folded.0, folded.1
                )),
                None => out.push(format!("rm_inventory {sku}: missing")),
            }
        }
        for (id, payment) in &store.payments {
            let folded = payment
                .status
                .map_or_else(|| "none".to_owned(), |s| s.to_string());
            match self.payments.get(id) {
                Some(status) if *status == folded => {}
                Some(status) => out.push(format!(
                    "rm_payments {id}: status {status}, the store says {folded}"
                )),
                None => out.push(format!(
                    "rm_payments {id}: missing, the store says {folded}"
                )),
            }
        }
        out
    }
}

/// A failed invariant: its name and what offends it.
pub struct Violation {
    pub invariant: &'static str,
    pub offenders: Vec<String>,
}

impl Violation {
    pub fn render(&self) -> String {
        let mut text = format!(
            "\n✗ {} — {} offender(s):",
            self.invariant,
            self.offenders.len()
        );
        for offender in self.offenders.iter().take(15) {
            let _ = write!(text, "\n    - {offender}");
        }
        if self.offenders.len() > 15 {
            let _ = write!(text, "\n    … and {} more", self.offenders.len() - 15);
        }
        text
    }
}

/// Every acknowledged write is in the store, and no restock was applied twice.
pub async fn acknowledged_writes(
    pool: &PgPool,
    store: &StoreView,
    acks: &[Ack],
    uncertain_restocks: &[Ack],
) -> Vec<String> {
    let positions: Vec<i64> = acks.iter().filter_map(|a| a.position).collect();
    let rows: Vec<(i64, String, String, String, Value)> = sqlx::query_as(
        "SELECT position, aggregate_type, aggregate_id, event_type, payload FROM events WHERE position = ANY($1)",
    )
    .bind(&positions)
    .fetch_all(pool)
    .await
    .expect("looking up acknowledged positions");
    let at: BTreeMap<i64, (String, String, String, Value)> = rows
        .into_iter()
        .map(|(p, t, id, e, payload)| (p, (t, id, e, payload)))
        .collect();
    let cancelled_events: Vec<String> = sqlx::query_scalar(
        "SELECT aggregate_id FROM events WHERE aggregate_type = 'order' AND event_type = 'OrderCancelled'",
    )
    .fetch_all(pool)
    .await
    .expect("listing cancellations");
    let cancelled_events: BTreeSet<String> = cancelled_events.into_iter().collect();
    let mut out = Vec::new();
    for ack in acks {
        let Some(position) = ack.position else {
            out.push(format!(
                "{} of {} (key {}) was acknowledged without X-Event-Position",
                ack.kind, ack.subject, ack.idempotency_key
            ));
            continue;
        };
        let Some((aggregate_type, aggregate_id, event_type, payload)) = at.get(&position) else {
            out.push(format!(
                "{} of {} (key {}) acknowledged at position {position}, which is not in the store",
                ack.kind, ack.subject, ack.idempotency_key
            ));
            continue;
        };
        match ack.kind {
            "checkout" => {
                let placed = ack
                    .subject
                    .parse::<Uuid>()
                    .ok()
                    .and_then(|id| store.orders.get(&id))
                    .is_some_and(|o| o.status.is_some());
                if !placed {
                    out.push(format!(
                        "checkout acknowledged order {} (key {}), which has no OrderPlaced in the store",
                        ack.subject, ack.idempotency_key
                    ));
                }
            }
            "cancel" if !cancelled_events.contains(&ack.subject) => {
                out.push(format!(
                    "cancel of order {} acknowledged at {position}, but its stream has no OrderCancelled",
                    ack.subject
                ));
            }
            "restock" => {
                let quantity = payload["Restocked"]["quantity"].as_i64();
                if aggregate_type != "inventory"
                    || *aggregate_id != ack.subject
                    || event_type != "Restocked"
                    || quantity != Some(ack.quantity)
                {
                    out.push(format!(
                        "restock of {} by {} acknowledged at {position}, where the store has {aggregate_type}/{aggregate_id} {event_type} {payload}",
                        ack.subject, ack.quantity
                    ));
                }
            }
            _ => {}
        }
    }
    // Exactly once: what was acknowledged, plus at most what was left uncertain.
    let mut acked: BTreeMap<&str, i64> = BTreeMap::new();
    for ack in acks.iter().filter(|a| a.kind == "restock") {
        *acked.entry(&ack.subject).or_default() += ack.quantity;
    }
    let mut maybe: BTreeMap<&str, i64> = BTreeMap::new();
    for ack in uncertain_restocks {
        *maybe.entry(&ack.subject).or_default() += ack.quantity;
    }
    for (sku, acked) in &acked {
        let stored = store.restocked.get(*sku).copied().unwrap_or(0);
        let extra = maybe.get(sku).copied().unwrap_or(0);
        if stored < *acked || stored > acked + extra {
            out.push(format!(
                "{sku}: restocks acknowledged {acked} units (+{extra} uncertain), the store has {stored}"
            ));
        }
    }
    out
}

/// Every order is confirmed or cancelled, and its saga completed with that outcome.
pub fn orders_terminal(store: &StoreView) -> Vec<String> {
    store.unsettled()
}

/// Per SKU: on hand = restocked − units of orders confirmed (and not cancelled); nothing
/// reserved; and the units the SKU counts as sold are exactly those of its confirmed orders.
pub fn stock_conserved(store: &StoreView) -> Vec<String> {
    let mut sold: BTreeMap<String, i64> = BTreeMap::new();
    let mut confirmed_by_sku: BTreeMap<String, BTreeMap<Uuid, i64>> = BTreeMap::new();
    for (id, order) in &store.orders {
        if order.status == Some(OrderStatus::Confirmed) {
            for line in &order.lines {
                *sold.entry(line.sku.as_str().to_owned()).or_default() += i64::from(line.quantity);
                *confirmed_by_sku
                    .entry(line.sku.as_str().to_owned())
                    .or_default()
                    .entry(*id)
                    .or_default() += i64::from(line.quantity);
            }
        }
    }
    let mut out = Vec::new();
    for (sku, inventory) in &store.inventory {
        let restocked = store.restocked.get(sku).copied().unwrap_or(0);
        let sold = sold.get(sku).copied().unwrap_or(0);
        let expected = restocked - sold;
        if inventory.levels.on_hand != expected {
            out.push(format!(
                "{sku}: on_hand {} but restocked {restocked} − sold to confirmed orders {sold} = {expected} ({:+} units)",
                inventory.levels.on_hand,
                inventory.levels.on_hand - expected
            ));
        }
        if inventory.levels.reserved != 0 || !inventory.reservations.is_empty() {
            let held: Vec<String> = inventory
                .reservations
                .iter()
                .map(|(order, quantity)| {
                    let status = store
                        .orders
                        .get(&order.0)
                        .and_then(|o| o.status)
                        .map_or("none", OrderStatus::as_str);
                    format!(
                        "{quantity} for order {} ({status}, saga {})",
                        order.0,
                        store.saga_outcome(&order.0).unwrap_or("not completed")
                    )
                })
                .collect();
            out.push(format!(
                "{sku}: {} units still reserved: {}",
                inventory.levels.reserved,
                held.join("; ")
            ));
        }
        let confirmed = confirmed_by_sku.get(sku).cloned().unwrap_or_default();
        for (order, quantity) in &inventory.committed {
            if !confirmed.contains_key(&order.0) {
                let status = store
                    .orders
                    .get(&order.0)
                    .and_then(|o| o.status)
                    .map_or("none", OrderStatus::as_str);
                out.push(format!(
                    "{sku}: {quantity} units sold to order {} whose status is {status}",
                    order.0
                ));
            }
        }
        for (order, quantity) in &confirmed {
            if !inventory
                .committed
                .contains_key(&commerce_domain::OrderId(*order))
            {
                out.push(format!(
                    "{sku}: confirmed order {order} ({quantity} units) never took its units out of stock"
                ));
            }
        }
    }
    out
}

/// Whether the engine's payment status and the sandbox's agree.
fn agrees(engine: Option<PaymentStatus>, sandbox: Option<SandboxStatus>) -> bool {
    use SandboxStatus as S;
    let sandbox = sandbox.unwrap_or(S::None);
    match engine {
        None | Some(PaymentStatus::Requested) => sandbox == S::None,
        Some(PaymentStatus::Declined) => matches!(sandbox, S::None | S::Declined | S::Voided),
        // Unanswered in time: nothing held (a late authorisation is voided on landing).
        Some(PaymentStatus::TimedOut) => matches!(sandbox, S::None | S::Voided),
        Some(PaymentStatus::Authorized) => sandbox == S::Authorized,
        Some(PaymentStatus::Captured) => sandbox == S::Captured,
        // Voided before any answer was recorded: the provider may never have authorised at
        // all, or declined to a worker that was frozen before it could record the answer (its
        // lease lost, the taker-over compensated with a void the provider had nothing to do
        // for). Nothing is held in any of these.
        Some(PaymentStatus::Voided) => matches!(sandbox, S::Voided | S::None | S::Declined),
        Some(PaymentStatus::Refunded) => sandbox == S::Refunded,
    }
}

/// `(double authorisations, money at risk, state disagreements)`: at most one authorisation
/// per payment; a confirmed order is captured, a cancelled one holds no money at the gateway;
/// the engine's payment state is the sandbox's.
pub fn payments_agree(
    store: &StoreView,
    sandbox: &BTreeMap<Uuid, Option<PaymentView>>,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut double = Vec::new();
    let mut money = Vec::new();
    let mut disagree = Vec::new();
    for (order_id, order) in &store.orders {
        let payment_id = store.payment_of.get(order_id).copied().unwrap_or_else(|| {
            commerce_domain::PaymentId::for_order(commerce_domain::OrderId(*order_id)).0
        });
        let engine = store.payments.get(&payment_id).and_then(|p| p.status);
        let view = sandbox.get(&payment_id).cloned().flatten();
        let at_sandbox = view.as_ref().map(|v| v.status);
        let status = order.status.map_or("none", OrderStatus::as_str);
        let calls = view.as_ref().map_or_else(String::new, |v| {
            v.calls
                .iter()
                .map(|c| {
                    format!(
                        "{:?}:{:?}@{}",
                        c.step,
                        c.outcome,
                        c.at.format("%H:%M:%S%.3f")
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        });
        if let Some(view) = &view {
            if view.successful_authorizations > 1 {
                double.push(format!(
                    "order {order_id} payment {payment_id}: {} successful authorisations [{calls}]",
                    view.successful_authorizations
                ));
            }
        }
        let engine_name = engine.map_or_else(|| "none".to_owned(), |s| s.to_string());
        let sandbox_name =
            at_sandbox.map_or_else(|| "never called".to_owned(), |s| format!("{s:?}"));
        if !agrees(engine, at_sandbox) {
            disagree.push(format!(
                "order {order_id} ({status}) payment {payment_id}: engine {engine_name}, sandbox {sandbox_name} [{calls}]"
            ));
        }
        let money_ok = match order.status {
            Some(OrderStatus::Confirmed) => {
                engine == Some(PaymentStatus::Captured)
                    && at_sandbox == Some(SandboxStatus::Captured)
            }
            Some(OrderStatus::Cancelled) => !matches!(
                at_sandbox,
                Some(SandboxStatus::Authorized | SandboxStatus::Captured)
            ),
            _ => true,
        };
        if !money_ok {
            money.push(format!(
                "order {order_id} is {status} but its payment is {engine_name} (sandbox {sandbox_name}) [{calls}]"
            ));
        }
    }
    (double, money, disagree)
}

/// Steps the saga only ever takes on its way forward (never while compensating or after an end).
const FORWARD: [&str; 8] = [
    "LineReserved",
    "OrderMarkedReserved",
    "AuthorizationRequested",
    "PaymentAuthorized",
    "OrderMarkedAuthorized",
    "OrderConfirmed",
    "PaymentCaptured",
    "StockCommitted",
];

/// Steps a confirmed saga may still take: a cancellation of the confirmed order by its buyer
/// (refund, put the stock back, cancel, give the cart back), a return, or the sale becoming final
/// once delivered. `CompensationStarted` is judged apart: only for the buyer's reason.
const AFTER_CONFIRMED: [&str; 9] = [
    "PaymentRefunded",
    "StockRestored",
    "OrderCancelled",
    "CartRestored",
    "ReturnStarted",
    "OrderMarkedRefunded",
    "DeliveryNoted",
    "ReturnsClosed",
    "StockSettled",
];

/// A step of saga `id` recorded after `since` that should not have been, with the whole stream.
fn late_step(id: Uuid, step: &SagaStep, since: &SagaStep, steps: &[SagaStep]) -> String {
    format!(
        "saga {id}: {} (position {}) recorded {:.1}s after {} [{}]",
        step.describe(),
        step.position,
        (step.recorded_at - since.recorded_at).num_milliseconds() as f64 / 1000.0,
        since.describe(),
        steps
            .iter()
            .map(SagaStep::describe)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Saga streams the state machine forbids: `(after completion, forward while compensating)`.
/// After `SagaCompleted(cancelled|refunded)` nothing may follow; after
/// `SagaCompleted(confirmed)` only the steps of a cancellation by the buyer (or of a return)
/// and their own completion: a compensation for any other reason (a payment timeout noticed
/// late, say) is a worker acting on stale news.
pub fn saga_streams(store: &StoreView) -> (Vec<String>, Vec<String>) {
    let mut after_completion = Vec::new();
    let mut forward_while_compensating = Vec::new();
    for (id, steps) in &store.sagas {
        let mut completed: Option<&SagaStep> = None;
        let mut compensating: Option<&SagaStep> = None;
        for step in steps {
            if let Some(done) = completed {
                let outcome = done.outcome().unwrap_or("?");
                let buyer_cancelled = step.event_type == "CompensationStarted"
                    && step.payload["CompensationStarted"]["reason"].as_str()
                        == Some(BUYER_CANCEL_REASON);
                let allowed = outcome == "confirmed"
                    && (AFTER_CONFIRMED.contains(&step.event_type.as_str())
                        || buyer_cancelled
                        || matches!(step.outcome(), Some("cancelled" | "refunded")));
                if !allowed {
                    after_completion.push(late_step(*id, step, done, steps));
                    break;
                }
            } else if let Some(started) = compensating {
                if FORWARD.contains(&step.event_type.as_str())
                    || step.outcome() == Some("confirmed")
                {
                    forward_while_compensating.push(late_step(*id, step, started, steps));
                    break;
                }
            }
            if step.event_type == "SagaCompleted" {
                completed = Some(step);
                compensating = None;
            } else if step.event_type == "CompensationStarted" || step.event_type == "ReturnStarted"
            {
                // A confirmed saga's cancellation is judged by the completion rule above.
                if completed.is_none() {
                    compensating = Some(step);
                }
            }
        }
    }
    (after_completion, forward_while_compensating)
}

/// Events parked in `dead_letters` and not retried.
pub async fn dead_letters(pool: &PgPool) -> Vec<String> {
    let rows: Vec<(String, String, String, i64, String, i32, String)> = sqlx::query_as(
        "SELECT projection, aggregate_type, aggregate_id, sequence, event_type, attempts, error \
         FROM dead_letters WHERE retried_at IS NULL ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .expect("reading dead_letters");
    rows.into_iter()
        .map(|(projection, t, id, sequence, event_type, attempts, error)| {
            let error: String = error.chars().take(300).collect();
            format!("{projection}: {t}/{id}#{sequence} {event_type} after {attempts} attempt(s): {error}")
        })
        .collect()
}

/// Sagas with work left (their order unsettled) and no `saga_deadlines` row: nobody will ever
/// drive them again.
pub fn open_sagas_have_deadlines(store: &StoreView) -> Vec<String> {
    let mut out = Vec::new();
    for (id, order) in &store.orders {
        let status = order.status.map_or("none", OrderStatus::as_str);
        let outcome = store.saga_outcome(id);
        let settled = matches!(
            (status, outcome),
            ("confirmed", Some("confirmed")) | ("cancelled", Some("cancelled"))
        );
        if !settled && !store.deadlines.contains_key(id) {
            let last = store
                .sagas
                .get(id)
                .and_then(|s| s.last())
                .map_or_else(|| "no saga stream".to_owned(), SagaStep::describe);
            out.push(format!(
                "order {id} ({status}): saga last step {last}, no saga_deadlines row"
            ));
        }
    }
    out
}

/// The saga state the engine itself folds, to describe a stuck saga.
pub async fn describe_saga(pool: &PgPool, id: &Uuid) -> String {
    let repo: Repository<CheckoutSaga> = Repository::new(pool.clone());
    match repo.load(&id.to_string()).await {
        Ok(loaded) => format!(
            "v{} outcome {:?} compensation {:?} reserved {:?} auth {:?}",
            loaded.version,
            loaded.state.outcome,
            loaded.state.compensation,
            loaded.state.reserved,
            loaded.state.authorization_id
        ),
        Err(error) => format!("unreadable: {error:#}"),
    }
}

/// Per SKU and order, the inventory's own record: a reservation only once, and never after the
/// order's units were released or sold (a worker acting on stale news reserves again).
pub async fn inventory_streams(pool: &PgPool) -> Vec<String> {
    let rows: Vec<(String, i64, i64, String, String)> = sqlx::query_as(
        "SELECT aggregate_id, sequence, position, event_type, (payload -> event_type ->> 'order_id') \
         FROM events WHERE aggregate_type = 'inventory' \
         AND event_type IN ('Reserved', 'Released', 'Committed', 'Restored') \
         ORDER BY aggregate_id, sequence",
    )
    .fetch_all(pool)
    .await
    .expect("reading the inventory streams");
    // (SKU, order) → (sequence, position, event type), in stream order.
    type History = BTreeMap<(String, String), Vec<(i64, i64, String)>>;
    let mut history: History = BTreeMap::new();
    for (sku, sequence, position, event_type, order) in rows {
        history
            .entry((sku, order))
            .or_default()
            .push((sequence, position, event_type));
    }
    let mut out = Vec::new();
    for ((sku, order), events) in history {
        let reservations = events.iter().filter(|(_, _, e)| e == "Reserved").count();
        if reservations > 1 {
            let listed: Vec<String> = events
                .iter()
                .map(|(seq, pos, e)| format!("#{seq}@{pos} {e}"))
                .collect();
            out.push(format!(
                "{sku} for order {order}: reserved {reservations} times [{}]",
                listed.join(", ")
            ));
        }
    }
    out
}

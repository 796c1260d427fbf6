//! Drives one checkout saga: asks it what to do next, does it, records it, until it is idle.
//!
//! Every effect is safe to repeat, so a worker that dies between an effect and its record, and
//! the worker that takes over, never double it: the aggregates ignore repeated steps (a second
//! reservation for an order is a no-op, a confirmed order is not confirmed again), the payment
//! provider is called with an idempotency key made of the payment id and the step, and every
//! command carries a causation id derived from the saga and the step.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use commerce_domain::cart::{Cart, CartCommand};
use commerce_domain::checkout::{
    CheckoutSaga, Facts, SagaAction, SagaCommand, SagaEvent, SagaOutcome,
};
use commerce_domain::inventory::{Inventory, InventoryCommand, InventoryError};
use commerce_domain::order::{Order, OrderCommand, OrderError, OrderLine, OrderStatus};
use commerce_domain::payment::{Payment, PaymentCommand, PaymentError, PaymentStatus};
use commerce_domain::services::{GatewayError, PaymentGateway};
use commerce_domain::{OrderId, PaymentId};
use commerce_store::batch::Batched;
use commerce_store::{
    payment_tokens, Batch, BatchError, CommandError, CommitError, Guard, Metadata, Repository,
};
use sqlx::PgPool;
use tracing::Instrument;
use uuid::Uuid;

use crate::deadlines::{self, Claimed, Due};
use crate::worker::Lease;

/// How a run of a saga ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    /// Nothing left to do until `next_due`, or until something happens to the order.
    Settled {
        next_due: Option<chrono::DateTime<Utc>>,
    },
    /// Settled, and its row let go of (or forgotten) with its last steps.
    Finished,
    /// Another worker holds the saga now; this one wrote nothing after losing it.
    LeaseLost,
}

/// How the checkout saga paces itself.
#[derive(Debug, Clone)]
pub struct SagaConfig {
    /// An authorisation unanswered this long is abandoned and the order compensated.
    pub payment_timeout: Duration,
    /// How long units stay held for an order whose payment is not authorised yet.
    pub reservation_hold: Duration,
    /// How long after delivery an order can be returned; the sale is final after it.
    pub return_window: Duration,
    /// The most steps committed together (1: every step its own commit).
    pub steps_per_commit: usize,
}

impl Default for SagaConfig {
    fn default() -> Self {
        Self {
            payment_timeout: Duration::from_secs(30),
            reservation_hold: Duration::from_secs(15 * 60),
            return_window: Duration::from_secs(30 * 24 * 3600),
            steps_per_commit: 32,
        }
    }
}

/// Everything a saga step touches.
pub struct SagaDriver {
    pub pool: PgPool,
    pub gateway: Arc<dyn PaymentGateway>,
    pub config: SagaConfig,
    sagas: Repository<CheckoutSaga>,
    orders: Repository<Order>,
    inventory: Repository<Inventory>,
    payments: Repository<Payment>,
    carts: Repository<Cart>,
}

/// The worker lost the saga's lease while it was driving it: a step was fenced off.
#[derive(Debug, thiserror::Error)]
#[error("this worker no longer holds the saga's lease")]
struct LostLease;

/// A step needs an aggregate another task holds while steps are staged: commit them first.
#[derive(Debug, thiserror::Error)]
#[error("an aggregate of this step is busy")]
struct Busy;

/// A step's command failed for a reason other than the business rule the caller handles.
fn step_failed<E: std::error::Error>(error: BatchError<E>, what: &str) -> anyhow::Error {
    match error {
        BatchError::Busy => anyhow::Error::new(Busy),
        BatchError::Command(CommandError::Fenced(_)) => anyhow::Error::new(LostLease),
        BatchError::Command(CommandError::Infrastructure(e)) => e.context(what.to_owned()),
        BatchError::Command(other) => anyhow::anyhow!("{what}: {other}"),
    }
}

/// The steps staged since the last commit, and what their transaction keeps beside their
/// events: when the saga is due next, and whether its card token is spent.
struct Staged {
    batch: Batch,
    due: Due,
    spends_token: bool,
    /// The saga settles with these steps, due next then (`deadlines::finish_in`).
    settles: Option<Option<DateTime<Utc>>>,
}

impl Staged {
    fn new(pool: &PgPool) -> Self {
        Self {
            batch: Batch::new(pool.clone()),
            due: Due::AsItWas,
            spends_token: false,
            settles: None,
        }
    }
}

impl SagaDriver {
    pub fn new(pool: PgPool, gateway: Arc<dyn PaymentGateway>, config: SagaConfig) -> Self {
        Self {
            sagas: Repository::new(pool.clone()),
            orders: Repository::new(pool.clone()),
            inventory: Repository::new(pool.clone()),
            payments: Repository::new(pool.clone()),
            carts: Repository::new(pool.clone()),
            pool,
            gateway,
            config,
        }
    }

    /// The metadata of the command a saga step sends: the order is the correlation, and the
    /// causation id is derived from the saga and the step, the same on every retry.
    fn metadata(order_id: Uuid, step: &str) -> Metadata {
        Metadata {
            correlation_id: order_id,
            causation_id: Uuid::new_v5(&order_id, step.as_bytes()),
            actor: None,
            idempotency_key: Some(format!("saga:{order_id}:{step}")),
            // The store stamps the current span's (the step's) trace context.
            ..Metadata::default()
        }
    }

    /// Commits the staged steps in one transaction that commits only while `claim` holds the
    /// saga's lease (and sets the saga's next deadline in its row); a fresh batch follows.
    /// A conflict (another process changed an aggregate of the batch) commits nothing: the
    /// steps are decided again on fresh state.
    async fn commit(&self, staged: &mut Staged, claim: Claimed) -> anyhow::Result<bool> {
        let Staged {
            mut batch,
            due,
            spends_token,
            settles,
        } = std::mem::replace(staged, Staged::new(&self.pool));
        if batch.is_empty() {
            return Ok(true);
        }
        let steps = batch.commands();
        batch.guard(Self::guard(claim, due, spends_token, settles));
        match batch.commit().await {
            Ok(_) => {
                metrics::histogram!("commerce_saga_steps_per_commit").record(steps as f64);
                Ok(true)
            }
            Err(CommitError::Conflict) => Ok(false),
            Err(CommitError::Fenced(_)) => Err(anyhow::Error::new(LostLease)),
            Err(error) => Err(anyhow::Error::new(CommandError::<Infallible>::from(error))
                .context("committing saga steps")),
        }
    }

    /// What a step's transaction checks and writes besides its events: the lease (and the
    /// saga's next deadline), and, when a step recorded the end of the payment, the deletion of
    /// its card token: from then on nothing can authorise the payment again, and a worker that
    /// takes the saga over before it still finds the token.
    fn guard(
        claim: Claimed,
        due: Due,
        spends_token: bool,
        settles: Option<Option<DateTime<Utc>>>,
    ) -> Guard {
        let fence = deadlines::fence(claim, due);
        let payment_id = PaymentId::for_order(OrderId(claim.saga_id));
        Arc::new(move |conn| {
            let fence = fence.clone();
            Box::pin(async move {
                fence(&mut *conn).await?;
                if spends_token {
                    payment_tokens::forget(&mut *conn, payment_id).await?;
                }
                if let Some(next_due) = settles {
                    deadlines::finish_in(conn, claim, next_due).await?;
                }
                Ok(())
            })
        })
    }

    /// The saga events after which the payment is never authorised again: compensation begun
    /// (declined, timed out, cancelled or out of stock: the money is only voided or refunded
    /// from there), the payment captured, the saga done (whatever path it took). The migration
    /// that created `payment_tokens` copied the tokens of the sagas without any of them.
    fn spends_token(event: &SagaEvent) -> bool {
        matches!(
            event,
            SagaEvent::CompensationStarted { .. }
                | SagaEvent::PaymentCaptured
                | SagaEvent::SagaCompleted { .. }
        )
    }

    fn record_step(event: &SagaEvent) -> String {
        format!("record-{}", cqrs_es::DomainEvent::event_type(event))
    }

    /// Stages the saga's record of a step.
    async fn record(
        &self,
        staged: &mut Staged,
        claim: Claimed,
        event: SagaEvent,
    ) -> anyhow::Result<()> {
        self.record_until(staged, claim, event, Due::AsItWas).await
    }

    /// [`Self::record`], setting when the saga is due next with it.
    async fn record_until(
        &self,
        staged: &mut Staged,
        claim: Claimed,
        event: SagaEvent,
        due: Due,
    ) -> anyhow::Result<()> {
        let metadata = Self::metadata(claim.saga_id, &Self::record_step(&event));
        staged.spends_token |= Self::spends_token(&event);
        let record = SagaCommand::Record(event);
        staged
            .batch
            .execute(&self.sagas, &claim.saga_id.to_string(), record, &metadata)
            .await
            .map_err(|e| step_failed(e, "recording a saga step"))?;
        if let Due::At(..) = due {
            staged.due = due;
        }
        Ok(())
    }

    /// Stages `command` to aggregate `id` and the saga's record `then` of it. A refusal of
    /// `command` stages nothing and is the caller's to handle.
    #[allow(clippy::too_many_arguments)]
    async fn send_and_record<A>(
        &self,
        staged: &mut Staged,
        repository: &Repository<A>,
        id: &str,
        command: A::Command,
        claim: Claimed,
        step: &str,
        then: SagaEvent,
        due: Due,
    ) -> Result<(), BatchError<A::Error>>
    where
        A: Batched,
    {
        // Both aggregates are held before either is changed, so the step is staged whole or
        // not at all: a lock that is busy halfway would commit the command without its record.
        let saga_id = claim.saga_id.to_string();
        staged.batch.state(repository, id).await?;
        staged
            .batch
            .state(&self.sagas, &saga_id)
            .await
            .map_err(|e| match e {
                BatchError::Busy => BatchError::Busy,
                BatchError::Command(e) => BatchError::Command(CommandError::Infrastructure(
                    anyhow::anyhow!("reading the saga: {e}"),
                )),
            })?;
        if !staged.batch.holds::<A>(id) {
            // Waiting for the saga let go of the other aggregate (nothing was staged yet).
            return Err(BatchError::Busy);
        }
        let metadata = Self::metadata(claim.saga_id, step);
        staged
            .batch
            .execute(repository, id, command, &metadata)
            .await?;
        self.record_until(staged, claim, then, due).await?;
        Ok(())
    }

    /// Stages an order command and its record `then`. A refusal because the order already took
    /// (or skipped past) that step is success: `then` is recorded alone, unless the order was
    /// cancelled and `when_cancelled` is false (the next decision sees the cancellation).
    async fn order_step(
        &self,
        staged: &mut Staged,
        claim: Claimed,
        command: OrderCommand,
        step: &str,
        then: SagaEvent,
        when_cancelled: bool,
    ) -> anyhow::Result<()> {
        let id = claim.saga_id.to_string();
        let sent = self.send_and_record(
            staged,
            &self.orders,
            &id,
            command,
            claim,
            step,
            then.clone(),
            Due::AsItWas,
        );
        match sent.await {
            Ok(()) => Ok(()),
            Err(BatchError::Command(CommandError::Rejected(OrderError::InvalidTransition {
                ..
            }))) => {
                let status = staged
                    .batch
                    .state(&self.orders, &id)
                    .await
                    .map_err(|e| step_failed(e, "reading the order"))?
                    .state
                    .status;
                if when_cancelled || status != Some(OrderStatus::Cancelled) {
                    self.record(staged, claim, then).await?;
                }
                Ok(())
            }
            Err(error) => Err(step_failed(error, &format!("order step {step}"))),
        }
    }

    /// Stages a payment command and its record `then`: `false` when the payment refused because
    /// it already took (or skipped past) that step, and nothing was staged.
    #[allow(clippy::too_many_arguments)]
    async fn payment_step(
        &self,
        staged: &mut Staged,
        claim: Claimed,
        payment_id: PaymentId,
        command: PaymentCommand,
        step: &str,
        then: SagaEvent,
        due: Due,
    ) -> anyhow::Result<bool> {
        let id = payment_id.to_string();
        match self
            .send_and_record(staged, &self.payments, &id, command, claim, step, then, due)
            .await
        {
            Ok(()) => Ok(true),
            Err(BatchError::Command(CommandError::Rejected(
                PaymentError::InvalidTransition { .. } | PaymentError::AlreadyRequested,
            ))) => Ok(false),
            Err(error) => Err(step_failed(error, &format!("payment step {step}"))),
        }
    }

    /// [`Self::payment_step`], recording `then` alone when the payment had taken the step.
    async fn payment_step_or_record(
        &self,
        staged: &mut Staged,
        claim: Claimed,
        payment_id: PaymentId,
        command: PaymentCommand,
        step: &str,
        then: SagaEvent,
    ) -> anyhow::Result<()> {
        let taken = self
            .payment_step(
                staged,
                claim,
                payment_id,
                command,
                step,
                then.clone(),
                Due::AsItWas,
            )
            .await?;
        if !taken {
            self.record(staged, claim, then).await?;
        }
        Ok(())
    }

    /// Stages an inventory command and its record `then`.
    async fn inventory_step(
        &self,
        staged: &mut Staged,
        claim: Claimed,
        sku: &str,
        command: InventoryCommand,
        step: &str,
        then: SagaEvent,
    ) -> Result<(), BatchError<InventoryError>> {
        let step = format!("{step}:{sku}");
        self.send_and_record(
            staged,
            &self.inventory,
            sku,
            command,
            claim,
            &step,
            then,
            Due::AsItWas,
        )
        .await
    }

    /// [`Self::inventory_step`] for a step no stock rule can refuse (the saga holds or sold the
    /// units): any refusal is a failure, retried later.
    async fn line_step(
        &self,
        staged: &mut Staged,
        claim: Claimed,
        line: &OrderLine,
        command: InventoryCommand,
        step: &str,
        then: SagaEvent,
    ) -> anyhow::Result<()> {
        self.inventory_step(staged, claim, line.sku.as_str(), command, step, then)
            .await
            .map_err(|e| step_failed(e, &format!("{step} of {}", line.sku)))
    }

    /// Runs the claimed saga until it has nothing left to do, or until the lease is lost:
    /// renewed between steps, and checked inside every commit's transaction.
    ///
    /// Consecutive steps are staged and committed together (up to `steps_per_commit`): a
    /// commit comes before every call to the payment provider (an effect outside the store
    /// happens only once the decisions leading to it are recorded), when the saga has nothing
    /// left to do, and when a step needs an aggregate another task holds. A batch of steps
    /// leaves exactly what the same steps one commit each would; a failure anywhere in it
    /// commits none of it, and the steps are decided again.
    ///
    /// Runs in a `saga` span that, when tracing is on, continues the trace of the saga's or the
    /// order's latest traced event (the checkout's request, at first), so the steps and the
    /// events they append belong to it.
    pub async fn drive(&self, lease: &mut Lease) -> anyhow::Result<Run> {
        let order_id = lease.claimed().saga_id;
        let span = tracing::info_span!("saga", %order_id);
        if commerce_store::trace::enabled() {
            match self.trace_of(order_id).await {
                Ok(Some(parent)) => {
                    commerce_store::trace::set_parent(&span, parent);
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::debug!(%order_id, error = format!("{error:#}"), "no trace context for the saga")
                }
            }
        }
        let result = match self.drive_staged(lease).instrument(span.clone()).await {
            Err(error) if error.downcast_ref::<LostLease>().is_some() => {
                span.in_scope(|| {
                    tracing::warn!("a step was fenced off: another worker holds the saga now")
                });
                Ok(Run::LeaseLost)
            }
            other => other,
        };
        if let Err(error) = &result {
            span.in_scope(|| tracing::error!(error = format!("{error:#}"), "the saga failed"));
        }
        result
    }

    /// The trace context of the latest traced event of the saga `order_id` or its order.
    async fn trace_of(
        &self,
        order_id: Uuid,
    ) -> anyhow::Result<Option<commerce_store::trace::Context>> {
        let metadata: Option<serde_json::Value> = sqlx::query_scalar(
            "SELECT metadata FROM events \
             WHERE aggregate_type IN ('checkout_saga', 'order') AND aggregate_id = $1 \
               AND metadata ? 'traceparent' \
             ORDER BY position DESC LIMIT 1",
        )
        .bind(order_id.to_string())
        .fetch_optional(&self.pool)
        .await
        .context("looking up the saga's trace context")?;
        Ok(metadata
            .as_ref()
            .and_then(commerce_store::trace::remote_context))
    }

    /// A step's name, for its span.
    fn step_name(action: &SagaAction) -> &'static str {
        match action {
            SagaAction::Start => "start",
            SagaAction::Reserve(_) => "reserve",
            SagaAction::MarkOrderReserved => "mark_order_reserved",
            SagaAction::RequestAuthorization => "request_authorization",
            SagaAction::Authorize { .. } => "authorize",
            SagaAction::MarkOrderAuthorized => "mark_order_authorized",
            SagaAction::ConfirmOrder => "confirm_order",
            SagaAction::Capture => "capture",
            SagaAction::Commit(_) => "commit",
            SagaAction::Compensate(_) => "compensate",
            SagaAction::VoidPayment => "void_payment",
            SagaAction::RefundPayment => "refund_payment",
            SagaAction::Release(_) => "release",
            SagaAction::Restore(_) => "restore",
            SagaAction::CancelOrder(_) => "cancel_order",
            SagaAction::RestoreCart => "restore_cart",
            SagaAction::StartReturn => "start_return",
            SagaAction::MarkOrderRefunded => "mark_order_refunded",
            SagaAction::NoteDelivery => "note_delivery",
            SagaAction::CloseReturns => "close_returns",
            SagaAction::Settle(_) => "settle",
            SagaAction::Complete(_) => "complete",
            SagaAction::Idle => "idle",
        }
    }

    async fn drive_staged(&self, lease: &mut Lease) -> anyhow::Result<Run> {
        let claim = lease.claimed();
        let order_id = claim.saga_id;
        let id = order_id.to_string();
        // Another worker may have driven this saga, and the buyer changed the order, since this
        // process last looked. Within the run the cached order is enough for most steps: every
        // order command is checked against the stream's version when it commits, and a
        // cancellation arriving meanwhile wakes the saga again; the steps that move money or
        // end the saga look again first (`needs_fresh_order`).
        self.sagas.load_latest(&id).await?;
        self.orders.load_latest(&id).await?;
        let mut staged = Staged::new(&self.pool);
        for _ in 0..1000 {
            // Kept here, the lease outlasts any step: it is renewed at least every second and
            // is longer than the payment timeout, so a call to the provider (which no
            // transaction can fence) starts and ends under it, unless this process stalls.
            if !lease.keep().await? {
                tracing::warn!("lost the saga's lease; another worker has it");
                return Ok(Run::LeaseLost);
            }
            let decided = self.decide(&mut staged, &id).await;
            let (saga, order, action) = match decided {
                Ok(decided) => decided,
                Err(error) if error.downcast_ref::<Busy>().is_some() => {
                    self.commit(&mut staged, claim).await?;
                    continue;
                }
                Err(error) => return Err(error),
            };
            tracing::debug!(?action, "saga step");
            if action == SagaAction::Idle {
                let next_due = saga.next_due();
                if staged.batch.is_empty() {
                    return Ok(Run::Settled { next_due });
                }
                // The saga's row is let go of with its last steps: one commit less.
                staged.settles = Some(next_due);
                if self.commit(&mut staged, claim).await? {
                    return Ok(Run::Finished);
                }
                continue;
            }
            if Self::moves_money(&action) && !staged.batch.is_empty() {
                // Decided again on what the commit left (a conflict there undid the steps).
                self.commit(&mut staged, claim).await?;
                continue;
            }
            let calls_provider = Self::moves_money(&action);
            let step = tracing::info_span!("saga_step", step = Self::step_name(&action));
            match self
                .perform(&mut staged, claim, &saga, &order, action)
                .instrument(step)
                .await
            {
                Ok(()) => {}
                Err(error) if error.downcast_ref::<Busy>().is_some() => {
                    // Nothing of the step was staged: it is decided again after the commit.
                    self.commit(&mut staged, claim).await?;
                    continue;
                }
                Err(error) => return Err(error),
            }
            // What the provider did is recorded at once, on its own: bundled with later steps, a
            // conflict on any of them would lose the record, and the steps decided again could
            // take another path (void a payment the provider captured).
            if calls_provider || staged.batch.commands() >= self.config.steps_per_commit.max(1) {
                self.commit(&mut staged, claim).await?;
            }
        }
        anyhow::bail!("saga {order_id} did not settle after 1000 steps")
    }

    /// The saga's next action, on the saga and the order as the staged steps leave them.
    async fn decide(
        &self,
        staged: &mut Staged,
        id: &str,
    ) -> anyhow::Result<(CheckoutSaga, Order, SagaAction)> {
        // Only the lease holder writes the saga's stream: after the fresh read at the start of
        // this run, the cached state is current (and a stale one could not commit).
        let saga = staged
            .batch
            .state(&self.sagas, id)
            .await
            .map_err(|e| step_failed(e, "reading the saga"))?
            .state;
        let order = staged
            .batch
            .state(&self.orders, id)
            .await
            .map_err(|e| step_failed(e, "reading the order"))?
            .state;
        let action = saga.next_action(&Self::facts(&order));
        if !Self::needs_fresh_order(&action) {
            return Ok((saga, order, action));
        }
        // Money moves or the saga ends on this step: decide it on the latest order, so a
        // cancellation that landed meanwhile is acted on now, not after.
        let order = staged
            .batch
            .latest(&self.orders, id)
            .await
            .map_err(|e| step_failed(e, "reading the order"))?
            .state;
        let action = saga.next_action(&Self::facts(&order));
        Ok((saga, order, action))
    }

    /// Steps that call the payment provider.
    fn moves_money(action: &SagaAction) -> bool {
        matches!(
            action,
            SagaAction::Authorize { .. }
                | SagaAction::Capture
                | SagaAction::VoidPayment
                | SagaAction::RefundPayment
        )
    }

    fn facts(order: &Order) -> Facts {
        Facts {
            now: Utc::now(),
            order_status: order.status,
            cancellation_reason: order.cancellation_reason.clone(),
        }
    }

    /// Steps that call the payment provider or end the saga, and do not go through the order's
    /// stream (whose version check would catch a change).
    fn needs_fresh_order(action: &SagaAction) -> bool {
        Self::moves_money(action) || matches!(action, SagaAction::Complete(_))
    }

    async fn perform(
        &self,
        staged: &mut Staged,
        claim: Claimed,
        saga: &CheckoutSaga,
        order: &Order,
        action: SagaAction,
    ) -> anyhow::Result<()> {
        let order_id = claim.saga_id;
        let id = OrderId(order_id);
        let payment_id = saga.payment_id.unwrap_or_else(|| PaymentId::for_order(id));
        match action {
            SagaAction::Idle => {}
            SagaAction::Start => {
                let (Some(buyer_id), Some(total)) = (order.buyer_id, order.total) else {
                    anyhow::bail!("order {order_id} has no buyer or total");
                };
                let now = Utc::now();
                let hold = chrono::Duration::from_std(self.config.reservation_hold)
                    .unwrap_or(chrono::Duration::minutes(15));
                let started = SagaEvent::SagaStarted {
                    order_id: id,
                    buyer_id,
                    lines: order.lines.clone(),
                    total,
                    payment_id: order.payment_id.unwrap_or(payment_id),
                    started_at: now,
                    hold_expires_at: now + hold,
                };
                self.record(staged, claim, started).await?;
            }
            SagaAction::Reserve(line) => {
                let command = InventoryCommand::Reserve {
                    order_id: id,
                    quantity: i64::from(line.quantity),
                };
                let reserved = SagaEvent::LineReserved {
                    sku: line.sku.clone(),
                };
                match self
                    .inventory_step(
                        staged,
                        claim,
                        line.sku.as_str(),
                        command,
                        "reserve",
                        reserved,
                    )
                    .await
                {
                    Ok(()) => {}
                    Err(BatchError::Command(CommandError::Rejected(refusal))) => {
                        let reason = match refusal {
                            InventoryError::OutOfStock { .. } => {
                                format!("out of stock: {}", line.sku)
                            }
                            other => format!("{} could not be reserved: {other}", line.sku),
                        };
                        self.record(staged, claim, SagaEvent::CompensationStarted { reason })
                            .await?;
                    }
                    Err(error) => return Err(step_failed(error, "reserving stock")),
                }
            }
            SagaAction::MarkOrderReserved => {
                self.order_step(
                    staged,
                    claim,
                    OrderCommand::RecordInventoryReserved,
                    "mark-reserved",
                    SagaEvent::OrderMarkedReserved,
                    false,
                )
                .await?;
            }
            SagaAction::RequestAuthorization => {
                let total = saga.total.context("a started saga has a total")?;
                let request = PaymentCommand::Request {
                    order_id: id,
                    amount: total,
                };
                let now = Utc::now();
                let timeout = chrono::Duration::from_std(self.config.payment_timeout)
                    .unwrap_or(chrono::Duration::seconds(30));
                let deadline = now + timeout;
                let requested = SagaEvent::AuthorizationRequested { at: now, deadline };
                // The deadline goes in the saga's row with the request: should this worker die
                // waiting for the answer, another acts on it in time.
                let due = Due::At(deadline, "payment_timeout");
                let sent = self.payment_step(
                    staged,
                    claim,
                    payment_id,
                    request,
                    "request-payment",
                    requested.clone(),
                    due,
                );
                if !sent.await? {
                    self.record(staged, claim, requested).await?;
                }
            }
            SagaAction::Authorize { deadline } => {
                self.authorize(staged, claim, saga, payment_id, deadline)
                    .await?
            }
            SagaAction::MarkOrderAuthorized => {
                self.order_step(
                    staged,
                    claim,
                    OrderCommand::RecordPaymentAuthorized,
                    "mark-authorized",
                    SagaEvent::OrderMarkedAuthorized,
                    false,
                )
                .await?;
            }
            SagaAction::ConfirmOrder => {
                self.order_step(
                    staged,
                    claim,
                    OrderCommand::Confirm,
                    "confirm",
                    SagaEvent::OrderConfirmed,
                    false,
                )
                .await?;
            }
            SagaAction::Capture => {
                let total = saga.total.context("a started saga has a total")?;
                self.gateway
                    .capture(payment_id, total)
                    .await
                    .map_err(|e| anyhow::anyhow!("capturing: {e}"))?;
                let capture = PaymentCommand::Capture { amount: total };
                self.payment_step_or_record(
                    staged,
                    claim,
                    payment_id,
                    capture,
                    "capture",
                    SagaEvent::PaymentCaptured,
                )
                .await?;
            }
            SagaAction::Commit(line) => {
                let then = SagaEvent::StockCommitted {
                    sku: line.sku.clone(),
                };
                let command = InventoryCommand::Commit { order_id: id };
                self.line_step(staged, claim, &line, command, "commit", then)
                    .await?;
            }
            SagaAction::Compensate(reason) => {
                tracing::info!(%reason, "compensating");
                self.record(staged, claim, SagaEvent::CompensationStarted { reason })
                    .await?;
            }
            SagaAction::VoidPayment => {
                // Voided at the provider whatever the payment shows here: an authorisation whose
                // answer never came may still have landed there.
                self.gateway
                    .void(payment_id)
                    .await
                    .map_err(|e| anyhow::anyhow!("voiding: {e}"))?;
                self.payment_step_or_record(
                    staged,
                    claim,
                    payment_id,
                    PaymentCommand::Void,
                    "void",
                    SagaEvent::PaymentVoided,
                )
                .await?;
            }
            SagaAction::RefundPayment => {
                let total = saga.total.context("a started saga has a total")?;
                self.gateway
                    .refund(payment_id, total)
                    .await
                    .map_err(|e| anyhow::anyhow!("refunding: {e}"))?;
                let refund = PaymentCommand::Refund { amount: total };
                self.payment_step_or_record(
                    staged,
                    claim,
                    payment_id,
                    refund,
                    "refund",
                    SagaEvent::PaymentRefunded,
                )
                .await?;
            }
            SagaAction::Release(line) => {
                let then = SagaEvent::LineReleased {
                    sku: line.sku.clone(),
                };
                let command = InventoryCommand::Release { order_id: id };
                self.line_step(staged, claim, &line, command, "release", then)
                    .await?;
            }
            SagaAction::Restore(line) => {
                let then = SagaEvent::StockRestored {
                    sku: line.sku.clone(),
                };
                let command = InventoryCommand::Restore { order_id: id };
                self.line_step(staged, claim, &line, command, "restore", then)
                    .await?;
            }
            SagaAction::CancelOrder(reason) => {
                let command = OrderCommand::Cancel {
                    reason,
                    cancelled_by: None,
                };
                self.order_step(
                    staged,
                    claim,
                    command,
                    "cancel",
                    SagaEvent::OrderCancelled,
                    true,
                )
                .await?;
            }
            SagaAction::RestoreCart => {
                // The cart remembers the orders it got back, so a repeat appends nothing; the
                // buyer's changes since checkout are merged (see `domain/src/cart/restore.rs`).
                let buyer = saga.buyer_id.context("a started saga has a buyer")?;
                let restore = CartCommand::Restore {
                    order_id: id,
                    lines: saga.lines.clone(),
                };
                self.send_and_record(
                    staged,
                    &self.carts,
                    &buyer.to_string(),
                    restore,
                    claim,
                    "restore-cart",
                    SagaEvent::CartRestored,
                    Due::AsItWas,
                )
                .await
                .map_err(|e| step_failed(e, "giving the buyer's cart back"))?;
            }
            SagaAction::StartReturn => self.record(staged, claim, SagaEvent::ReturnStarted).await?,
            SagaAction::MarkOrderRefunded => {
                self.order_step(
                    staged,
                    claim,
                    OrderCommand::RecordRefund,
                    "mark-refunded",
                    SagaEvent::OrderMarkedRefunded,
                    true,
                )
                .await?;
            }
            SagaAction::NoteDelivery => {
                let window = chrono::Duration::from_std(self.config.return_window)
                    .unwrap_or(chrono::Duration::days(30));
                let settle_at = Utc::now() + window;
                let noted = SagaEvent::DeliveryNoted { settle_at };
                self.record_until(staged, claim, noted, Due::At(settle_at, "return_window"))
                    .await?;
            }
            SagaAction::CloseReturns => {
                let id = order_id.to_string();
                let close = OrderCommand::CloseReturns;
                let then = SagaEvent::ReturnsClosed;
                match self
                    .send_and_record(
                        staged,
                        &self.orders,
                        &id,
                        close,
                        claim,
                        "close-returns",
                        then.clone(),
                        Due::AsItWas,
                    )
                    .await
                {
                    Ok(()) => {}
                    // Closed already: only the record is missing.
                    Err(BatchError::Command(CommandError::Rejected(
                        OrderError::ReturnWindowClosed,
                    ))) => self.record(staged, claim, then).await?,
                    // Returned first: the next decision takes the return path.
                    Err(BatchError::Command(CommandError::Rejected(
                        OrderError::InvalidTransition { .. },
                    ))) => {}
                    Err(error) => return Err(step_failed(error, "closing returns")),
                }
            }
            SagaAction::Settle(line) => {
                let then = SagaEvent::StockSettled {
                    sku: line.sku.clone(),
                };
                let command = InventoryCommand::Settle { order_id: id };
                self.line_step(staged, claim, &line, command, "settle", then)
                    .await?;
            }
            SagaAction::Complete(outcome) => {
                self.record(staged, claim, SagaEvent::SagaCompleted { outcome })
                    .await?;
                let name = match outcome {
                    SagaOutcome::Confirmed => "confirmed",
                    SagaOutcome::Cancelled => "cancelled",
                    SagaOutcome::Refunded => "refunded",
                };
                metrics::counter!("commerce_sagas_completed_total", "outcome" => name).increment(1);
            }
        }
        Ok(())
    }

    /// Asks the provider, waiting no later than `deadline`; records the answer on the payment
    /// and in the saga. A decline or no answer in time compensates (voiding, in case a late
    /// answer lands) — but only while the payment still waits for its answer: whatever the
    /// payment recorded first (another worker's answer) is what the saga follows.
    async fn authorize(
        &self,
        staged: &mut Staged,
        claim: Claimed,
        saga: &CheckoutSaga,
        payment_id: PaymentId,
        deadline: chrono::DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let total = saga.total.context("a started saga has a total")?;
        // Kept beside the order's events, not in any stream; read again on every attempt, so a
        // worker that took the saga over authorises with the same token.
        let token = payment_tokens::token(&self.pool, payment_id)
            .await?
            .with_context(|| format!("no card token is kept for payment {payment_id}"))?;
        let remaining = (deadline - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        let call = self
            .gateway
            .authorize(payment_id, total, token.expose(), remaining);
        let answer = match tokio::time::timeout(remaining, call).await {
            Ok(answer) => answer,
            Err(_) => Err(GatewayError::Timeout),
        };
        let (command, step, then) = match &answer {
            Ok(authorization_id) => (
                PaymentCommand::RecordAuthorized {
                    authorization_id: authorization_id.clone(),
                },
                "record-authorized",
                SagaEvent::PaymentAuthorized {
                    authorization_id: authorization_id.clone(),
                },
            ),
            Err(error) => {
                tracing::info!(%payment_id, %error, "authorisation failed");
                let (command, reason) = match error {
                    GatewayError::Declined(why) => (
                        PaymentCommand::RecordDeclined {
                            reason: why.clone(),
                        },
                        format!("the payment was declined: {why}"),
                    ),
                    GatewayError::Timeout => (PaymentCommand::RecordTimedOut, TIMED_OUT.to_owned()),
                    GatewayError::Unavailable(_) => (
                        PaymentCommand::RecordDeclined {
                            reason: "provider unavailable".to_owned(),
                        },
                        "the payment could not be processed".to_owned(),
                    ),
                };
                (
                    command,
                    "record-answer",
                    SagaEvent::CompensationStarted { reason },
                )
            }
        };
        if self
            .payment_step(staged, claim, payment_id, command, step, then, Due::AsItWas)
            .await?
        {
            return Ok(());
        }
        // The payment already has its answer: follow it, whatever this call said.
        let payment = staged
            .batch
            .latest(&self.payments, &payment_id.to_string())
            .await
            .map_err(|e| step_failed(e, "reading the payment"))?
            .state;
        let follow = match (payment.status, payment.authorization_id) {
            (Some(PaymentStatus::Authorized | PaymentStatus::Captured), Some(authorization_id)) => {
                SagaEvent::PaymentAuthorized { authorization_id }
            }
            (Some(PaymentStatus::TimedOut), _) => SagaEvent::CompensationStarted {
                reason: TIMED_OUT.to_owned(),
            },
            (status, _) => SagaEvent::CompensationStarted {
                reason: format!(
                    "the payment could not be processed ({})",
                    status.map_or("missing".to_owned(), |s| s.to_string())
                ),
            },
        };
        self.record(staged, claim, follow).await
    }
}

/// The cancellation reason of an order whose payment went unanswered.
const TIMED_OUT: &str = "the payment provider did not answer in time";

//! Drives one checkout saga: asks it what to do next, does it, records it, until it is idle.
//!
//! Every effect is safe to repeat, so a worker that dies between an effect and its record, and
//! the worker that takes over, never double it: the aggregates ignore repeated steps (a second
//! reservation for an order is a no-op, a confirmed order is not confirmed again), the payment
//! provider is called with an idempotency key made of the payment id and the step, and every
//! command carries a causation id derived from the saga and the step.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use commerce_domain::checkout::{
    CheckoutSaga, Facts, SagaAction, SagaCommand, SagaEvent, SagaOutcome,
};
use commerce_domain::inventory::{Inventory, InventoryCommand, InventoryError};
use commerce_domain::order::{Order, OrderCommand, OrderError, OrderStatus};
use commerce_domain::payment::{Payment, PaymentCommand, PaymentError};
use commerce_domain::services::{GatewayError, PaymentGateway};
use commerce_domain::{OrderId, PaymentId};
use commerce_store::repository::CommandOptions;
use commerce_store::{CommandError, CommitError, Metadata, Repository, UnitOfWork};
use cqrs_es::Aggregate;
use sqlx::PgPool;
use uuid::Uuid;

use crate::deadlines;

/// Attempts at a step whose commit conflicts with another process's.
const MAX_ATTEMPTS: usize = 8;

/// How the checkout saga paces itself.
#[derive(Debug, Clone)]
pub struct SagaConfig {
    /// An authorisation unanswered this long is abandoned and the order compensated.
    pub payment_timeout: Duration,
    /// How long units stay held for an order whose payment is not authorised yet.
    pub reservation_hold: Duration,
}

impl Default for SagaConfig {
    fn default() -> Self {
        Self {
            payment_timeout: Duration::from_secs(30),
            reservation_hold: Duration::from_secs(15 * 60),
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
}

/// A step's command failed for a reason other than a business rule.
fn infrastructure<E: std::error::Error>(error: CommandError<E>) -> anyhow::Error {
    match error {
        CommandError::Infrastructure(e) => e,
        other => anyhow::anyhow!("{other}"),
    }
}

impl SagaDriver {
    pub fn new(pool: PgPool, gateway: Arc<dyn PaymentGateway>, config: SagaConfig) -> Self {
        Self {
            sagas: Repository::new(pool.clone()),
            orders: Repository::new(pool.clone()),
            inventory: Repository::new(pool.clone()),
            payments: Repository::new(pool.clone()),
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
        }
    }

    /// Sends `command` to aggregate `id` and records `then` in the saga, in one transaction: a
    /// step and its record are one commit, and a crash cannot fall between them. A refusal of
    /// `command` records nothing; a conflict (another process wrote `id`) decides again.
    async fn send_and_record<A>(
        &self,
        repository: &Repository<A>,
        id: &str,
        command: A::Command,
        order_id: Uuid,
        step: &str,
        then: SagaEvent,
    ) -> Result<(), CommandError<A::Error>>
    where
        A: Aggregate<Services = ()> + Clone + 'static,
        A::Command: Clone,
    {
        let metadata =
            serde_json::to_value(Self::metadata(order_id, step)).context("serialising metadata")?;
        let record_metadata = serde_json::to_value(Self::metadata(
            order_id,
            &format!("record-{}", cqrs_es::DomainEvent::event_type(&then)),
        ))
        .context("serialising metadata")?;
        let saga_id = order_id.to_string();
        for _ in 0..MAX_ATTEMPTS {
            let mut target = repository.lock(id).await;
            let loaded = target.load().await?.clone();
            let (state, events) = match target.decide(&loaded, command.clone()).await {
                Ok(decided) => decided,
                Err(refusal) => {
                    // A refusal decided on another process's old news is decided again.
                    if target.is_stale().await? {
                        target.evict();
                        continue;
                    }
                    return Err(CommandError::Rejected(refusal));
                }
            };
            if events.is_empty() && target.is_stale().await? {
                target.evict();
                continue;
            }
            let mut saga = self.sagas.lock(&saga_id).await;
            let saga_loaded = saga.load().await?.clone();
            let (saga_state, saga_events) = saga
                .decide(&saga_loaded, SagaCommand::Record(then.clone()))
                .await
                .map_err(|e| anyhow::anyhow!("recording a saga step: {e}"))?;
            let mut unit = UnitOfWork::default();
            let target_snapshot = !events.is_empty()
                && target.stage(&mut unit, &loaded, &state, &events, &metadata)?;
            let saga_snapshot = saga.stage(
                &mut unit,
                &saga_loaded,
                &saga_state,
                &saga_events,
                &record_metadata,
            )?;
            match unit.commit(&self.pool).await {
                Ok(_) => {
                    let version = loaded.version + events.len() as i64;
                    target.committed(state, version, target_snapshot);
                    let saga_version = saga_loaded.version + saga_events.len() as i64;
                    saga.committed(saga_state, saga_version, saga_snapshot);
                    return Ok(());
                }
                Err(CommitError::Conflict) => {
                    target.evict();
                    saga.evict();
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(CommandError::Conflict)
    }

    /// Records a step that changed nothing else (or whose change is already in).
    async fn record(&self, order_id: Uuid, event: SagaEvent) -> anyhow::Result<()> {
        let step = format!("record-{}", cqrs_es::DomainEvent::event_type(&event));
        let options = CommandOptions::new(Self::metadata(order_id, &step));
        self.sagas
            .execute(&order_id.to_string(), SagaCommand::Record(event), options)
            .await
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("recording a saga step: {e}"))
    }

    /// Sends an order command and records `then` with it. A refusal because the order already
    /// took (or skipped past) that step is success: `then` is recorded alone, unless the order
    /// was cancelled and `when_cancelled` is false (the next decision sees the cancellation).
    async fn order_step(
        &self,
        order_id: Uuid,
        command: OrderCommand,
        step: &str,
        then: SagaEvent,
        when_cancelled: bool,
    ) -> anyhow::Result<()> {
        let id = order_id.to_string();
        match self
            .send_and_record(&self.orders, &id, command, order_id, step, then.clone())
            .await
        {
            Ok(()) => Ok(()),
            Err(CommandError::Rejected(OrderError::InvalidTransition { .. })) => {
                let status = self.orders.load(&id).await?.state.status;
                if when_cancelled || status != Some(OrderStatus::Cancelled) {
                    self.record(order_id, then).await?;
                }
                Ok(())
            }
            Err(error) => Err(infrastructure(error)).with_context(|| format!("order step {step}")),
        }
    }

    /// Sends a payment command and records `then` with it; when the payment refuses because it
    /// already took (or skipped past) that step, records `then` alone.
    async fn payment_step(
        &self,
        order_id: Uuid,
        payment_id: PaymentId,
        command: PaymentCommand,
        step: &str,
        then: SagaEvent,
    ) -> anyhow::Result<()> {
        let taken = self
            .try_payment_step(order_id, payment_id, command, step, then.clone())
            .await?;
        if !taken {
            self.record(order_id, then).await?;
        }
        Ok(())
    }

    /// [`Self::payment_step`] without the record on refusal: `false` when the payment refused
    /// because it already took (or skipped past) that step, and nothing was recorded.
    async fn try_payment_step(
        &self,
        order_id: Uuid,
        payment_id: PaymentId,
        command: PaymentCommand,
        step: &str,
        then: SagaEvent,
    ) -> anyhow::Result<bool> {
        let id = payment_id.to_string();
        match self
            .send_and_record(&self.payments, &id, command, order_id, step, then)
            .await
        {
            Ok(()) => Ok(true),
            Err(CommandError::Rejected(
                PaymentError::InvalidTransition { .. } | PaymentError::AlreadyRequested,
            )) => Ok(false),
            Err(error) => {
                Err(infrastructure(error)).with_context(|| format!("payment step {step}"))
            }
        }
    }

    /// Sends an inventory command and records `then` with it.
    async fn inventory_step(
        &self,
        order_id: Uuid,
        sku: &str,
        command: InventoryCommand,
        step: &str,
        then: SagaEvent,
    ) -> Result<(), CommandError<InventoryError>> {
        self.send_and_record(
            &self.inventory,
            sku,
            command,
            order_id,
            &format!("{step}:{sku}"),
            then,
        )
        .await
    }

    /// Runs saga `order_id` until it has nothing left to do. `keep_lease` is called between
    /// steps; when it says the claim was lost, the driver stops and leaves the saga to its new owner.
    #[tracing::instrument(skip_all, fields(order_id = %order_id), err)]
    pub async fn drive<F, Fut>(&self, order_id: Uuid, mut keep_lease: F) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<bool>>,
    {
        // Another worker may have driven this saga, and the buyer changed the order, since this
        // process last looked. Within the run the cached order is enough for most steps: every
        // order command is checked against the stream's version when it commits, and a
        // cancellation arriving meanwhile wakes the saga again; the steps that move money or
        // end the saga look again first (`needs_fresh_order`).
        self.sagas.load_latest(&order_id.to_string()).await?;
        self.orders.load_latest(&order_id.to_string()).await?;
        for _ in 0..1000 {
            if !keep_lease().await? {
                tracing::warn!("lost the saga's lease; another worker has it");
                return Ok(());
            }
            // Only the lease holder writes the saga's stream: after the fresh read at the start
            // of this run, the cached state is current.
            let saga = self.sagas.load(&order_id.to_string()).await?.state;
            let mut order = self.orders.load(&order_id.to_string()).await?.state;
            let mut action = saga.next_action(&Self::facts(&order));
            if Self::needs_fresh_order(&action) {
                // Money moves or the saga ends on this step: decide it on the latest order, so
                // a cancellation that landed meanwhile is acted on now, not after.
                order = self.orders.load_latest(&order_id.to_string()).await?.state;
                action = saga.next_action(&Self::facts(&order));
            }
            tracing::debug!(?action, "saga step");
            if action == SagaAction::Idle {
                return Ok(());
            }
            self.perform(order_id, &saga, &order, action).await?;
        }
        anyhow::bail!("saga {order_id} did not settle after 1000 steps")
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
        matches!(
            action,
            SagaAction::Authorize { .. }
                | SagaAction::Capture
                | SagaAction::VoidPayment
                | SagaAction::RefundPayment
                | SagaAction::Complete(_)
        )
    }

    async fn perform(
        &self,
        order_id: Uuid,
        saga: &CheckoutSaga,
        order: &Order,
        action: SagaAction,
    ) -> anyhow::Result<()> {
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
                self.record(order_id, started).await?;
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
                    .inventory_step(order_id, line.sku.as_str(), command, "reserve", reserved)
                    .await
                {
                    Ok(()) => {}
                    Err(CommandError::Rejected(refusal)) => {
                        let reason = match refusal {
                            InventoryError::OutOfStock { .. } => {
                                format!("out of stock: {}", line.sku)
                            }
                            other => format!("{} could not be reserved: {other}", line.sku),
                        };
                        self.record(order_id, SagaEvent::CompensationStarted { reason })
                            .await?;
                    }
                    Err(error) => return Err(infrastructure(error)).context("reserving stock"),
                }
            }
            SagaAction::MarkOrderReserved => {
                self.order_step(
                    order_id,
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
                self.payment_step(order_id, payment_id, request, "request-payment", requested)
                    .await?;
                deadlines::set_payment_deadline(&self.pool, order_id, deadline).await?;
            }
            SagaAction::Authorize { deadline } => {
                self.authorize(order_id, saga, order, payment_id, deadline)
                    .await?
            }
            SagaAction::MarkOrderAuthorized => {
                self.order_step(
                    order_id,
                    OrderCommand::RecordPaymentAuthorized,
                    "mark-authorized",
                    SagaEvent::OrderMarkedAuthorized,
                    false,
                )
                .await?;
            }
            SagaAction::ConfirmOrder => {
                self.order_step(
                    order_id,
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
                self.payment_step(
                    order_id,
                    payment_id,
                    PaymentCommand::Capture { amount: total },
                    "capture",
                    SagaEvent::PaymentCaptured,
                )
                .await?;
            }
            SagaAction::Commit(line) => {
                let command = InventoryCommand::Commit { order_id: id };
                let then = SagaEvent::StockCommitted {
                    sku: line.sku.clone(),
                };
                self.inventory_step(order_id, line.sku.as_str(), command, "commit", then)
                    .await
                    .map_err(infrastructure)?;
            }
            SagaAction::Compensate(reason) => {
                tracing::info!(%reason, "compensating");
                self.record(order_id, SagaEvent::CompensationStarted { reason })
                    .await?;
            }
            SagaAction::VoidPayment => {
                self.gateway
                    .void(payment_id)
                    .await
                    .map_err(|e| anyhow::anyhow!("voiding: {e}"))?;
                let payment = self.payments.load(&payment_id.to_string()).await?.state;
                let voided = SagaEvent::PaymentVoided;
                if payment.authorized.is_some() && payment.status.is_some() {
                    self.payment_step(order_id, payment_id, PaymentCommand::Void, "void", voided)
                        .await?;
                } else {
                    self.record(order_id, voided).await?;
                }
            }
            SagaAction::RefundPayment => {
                let total = saga.total.context("a started saga has a total")?;
                self.gateway
                    .refund(payment_id, total)
                    .await
                    .map_err(|e| anyhow::anyhow!("refunding: {e}"))?;
                self.payment_step(
                    order_id,
                    payment_id,
                    PaymentCommand::Refund { amount: total },
                    "refund",
                    SagaEvent::PaymentRefunded,
                )
                .await?;
            }
            SagaAction::Release(line) => {
                let command = InventoryCommand::Release { order_id: id };
                let then = SagaEvent::LineReleased {
                    sku: line.sku.clone(),
                };
                self.inventory_step(order_id, line.sku.as_str(), command, "release", then)
                    .await
                    .map_err(infrastructure)?;
            }
            SagaAction::Restore(line) => {
                let command = InventoryCommand::Restore { order_id: id };
                let then = SagaEvent::StockRestored {
                    sku: line.sku.clone(),
                };
                self.inventory_step(order_id, line.sku.as_str(), command, "restore", then)
                    .await
                    .map_err(infrastructure)?;
            }
            SagaAction::CancelOrder(reason) => {
                let command = OrderCommand::Cancel {
                    reason,
                    cancelled_by: None,
                };
                self.order_step(order_id, command, "cancel", SagaEvent::OrderCancelled, true)
                    .await?;
            }
            SagaAction::StartReturn => self.record(order_id, SagaEvent::ReturnStarted).await?,
            SagaAction::MarkOrderRefunded => {
                self.order_step(
                    order_id,
                    OrderCommand::RecordRefund,
                    "mark-refunded",
                    SagaEvent::OrderMarkedRefunded,
                    true,
                )
                .await?;
            }
            SagaAction::Complete(outcome) => {
                self.record(order_id, SagaEvent::SagaCompleted { outcome })
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

    /// Asks the provider, waiting no later than `deadline`; records the answer on the payment and
    /// in the saga. No answer in time compensates (and voids, in case the answer comes late).
    async fn authorize(
        &self,
        order_id: Uuid,
        saga: &CheckoutSaga,
        order: &Order,
        payment_id: PaymentId,
        deadline: chrono::DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let total = saga.total.context("a started saga has a total")?;
        let remaining = (deadline - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        // The token lives on the order (the saga's stream keeps no card reference).
        let token = order
            .payment_token
            .clone()
            .context("the order has no payment token")?;
        let answer = match tokio::time::timeout(
            remaining,
            self.gateway.authorize(payment_id, total, &token),
        )
        .await
        {
            Ok(answer) => answer,
            Err(_) => Err(GatewayError::Timeout),
        };
        match answer {
            Ok(authorization_id) => {
                let record = PaymentCommand::RecordAuthorized {
                    authorization_id: authorization_id.clone(),
                };
                let authorized = SagaEvent::PaymentAuthorized {
                    authorization_id: authorization_id.clone(),
                };
                let taken = self
                    .try_payment_step(
                        order_id,
                        payment_id,
                        record,
                        "record-authorized",
                        authorized,
                    )
                    .await?;
                if taken {
                    return Ok(());
                }
                let payment = self.payments.load(&payment_id.to_string()).await?.state;
                if payment.status == Some(commerce_domain::payment::PaymentStatus::Declined) {
                    // Another worker gave up on this authorisation first: compensate, voiding it.
                    let reason = "the payment provider did not answer in time".to_owned();
                    self.record(order_id, SagaEvent::CompensationStarted { reason })
                        .await?;
                } else {
                    self.record(order_id, SagaEvent::PaymentAuthorized { authorization_id })
                        .await?;
                }
            }
            Err(error) => {
                let (recorded, reason) = match &error {
                    GatewayError::Declined(why) => {
                        (why.clone(), format!("the payment was declined: {why}"))
                    }
                    GatewayError::Timeout => (
                        "no answer in time".to_owned(),
                        "the payment provider did not answer in time".to_owned(),
                    ),
                    GatewayError::Unavailable(_) => (
                        "provider unavailable".to_owned(),
                        "the payment could not be processed".to_owned(),
                    ),
                };
                tracing::info!(%payment_id, error = %error, "authorisation failed");
                self.payment_step(
                    order_id,
                    payment_id,
                    PaymentCommand::RecordDeclined { reason: recorded },
                    "record-declined",
                    SagaEvent::CompensationStarted { reason },
                )
                .await?;
            }
        }
        Ok(())
    }
}

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::SagaEvent;
use crate::order::{OrderLine, OrderStatus};
use crate::{AccountId, Money, OrderId, PaymentId, Sku};

/// How a saga ended (so far: a confirmed order may later be cancelled or refunded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SagaOutcome {
    Confirmed,
    Cancelled,
    Refunded,
}

/// The one command: record a step. The saga refuses steps out of order and ignores repeats,
/// so a worker that redoes a step after a crash records nothing twice.
#[derive(Debug, Clone, PartialEq)]
pub enum SagaCommand {
    Record(SagaEvent),
}

/// Why a step cannot be recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SagaError {
    #[error("the saga has not started")]
    NotStarted,
    #[error("the saga has already started")]
    AlreadyStarted,
    #[error("{0} is not a line of this order")]
    UnknownLine(Sku),
    #[error("step out of order: {0}")]
    OutOfOrder(&'static str),
    #[error("the saga has completed")]
    Completed,
}

/// What the saga sees of the world when it decides.
#[derive(Debug, Clone)]
pub struct Facts {
    pub now: DateTime<Utc>,
    /// The order's status, `None` if it does not exist.
    pub order_status: Option<OrderStatus>,
    /// The order's cancellation reason, when someone else cancelled it.
    pub cancellation_reason: Option<String>,
}

/// The next thing to do.
#[derive(Debug, Clone, PartialEq)]
pub enum SagaAction {
    /// Take charge of the placed order.
    Start,
    Reserve(OrderLine),
    MarkOrderReserved,
    /// Create the payment and ask the provider; record the request first.
    RequestAuthorization,
    /// Ask the provider (again, with the same key) and wait until `deadline` at most.
    Authorize {
        deadline: DateTime<Utc>,
    },
    MarkOrderAuthorized,
    ConfirmOrder,
    Capture,
    Commit(OrderLine),
    /// Start compensating, for `reason`.
    Compensate(String),
    VoidPayment,
    RefundPayment,
    Release(OrderLine),
    Restore(OrderLine),
    CancelOrder(String),
    /// Give the buyer's cart the cancelled order's lines back.
    RestoreCart,
    StartReturn,
    MarkOrderRefunded,
    /// The confirmed order was delivered: note when its return window closes.
    NoteDelivery,
    /// The return window closed: close the order for returns.
    CloseReturns,
    /// Make a line's sale final at its SKU.
    Settle(OrderLine),
    Complete(SagaOutcome),
    /// Nothing to do until something changes.
    Idle,
}

/// The saga's record of what happened.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckoutSaga {
    pub order_id: Option<OrderId>,
    pub buyer_id: Option<AccountId>,
    pub lines: Vec<OrderLine>,
    pub total: Option<Money>,
    pub payment_id: Option<PaymentId>,
    pub started_at: Option<DateTime<Utc>>,
    pub hold_expires_at: Option<DateTime<Utc>>,
    pub reserved: BTreeSet<Sku>,
    pub order_marked_reserved: bool,
    pub authorization_deadline: Option<DateTime<Utc>>,
    pub authorization_id: Option<String>,
    pub order_marked_authorized: bool,
    pub confirmed: bool,
    pub captured: bool,
    pub committed: BTreeSet<Sku>,
    pub compensation: Option<String>,
    pub voided: bool,
    pub refunded: bool,
    pub released: BTreeSet<Sku>,
    pub restored: BTreeSet<Sku>,
    pub order_cancelled: bool,
    /// The buyer's cart got the order's lines back.
    #[serde(default)]
    pub cart_restored: bool,
    pub returning: bool,
    pub order_marked_refunded: bool,
    pub outcome: Option<SagaOutcome>,
    /// When a delivered order's return window closes.
    #[serde(default)]
    pub settle_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub returns_closed: bool,
    #[serde(default)]
    pub settled: BTreeSet<Sku>,
}

impl CheckoutSaga {
    fn has_line(&self, sku: &Sku) -> Result<(), SagaError> {
        if self.lines.iter().any(|l| l.sku == *sku) {
            Ok(())
        } else {
            Err(SagaError::UnknownLine(sku.clone()))
        }
    }

    /// Whether `event` is new (`Some`), a repeat (`None`), or out of order (an error).
    fn check(&self, event: SagaEvent) -> Result<Option<SagaEvent>, SagaError> {
        use SagaEvent::*;
        if matches!(event, SagaStarted { .. }) {
            return if self.order_id.is_some() {
                Err(SagaError::AlreadyStarted)
            } else {
                Ok(Some(event))
            };
        }
        if self.order_id.is_none() {
            return Err(SagaError::NotStarted);
        }
        let repeat = match &event {
            SagaStarted { .. } => false,
            LineReserved { sku } => {
                self.has_line(sku)?;
                self.reserved.contains(sku)
            }
            OrderMarkedReserved => self.order_marked_reserved,
            AuthorizationRequested { .. } => self.authorization_deadline.is_some(),
            PaymentAuthorized { .. } => {
                if self.authorization_deadline.is_none() {
                    return Err(SagaError::OutOfOrder("authorised before it was requested"));
                }
                if self.authorization_id.is_none() && self.compensation.is_some() {
                    // The saga gave up on the payment; a late answer is voided, not recorded.
                    return Err(SagaError::OutOfOrder(
                        "authorised after compensation started",
                    ));
                }
                self.authorization_id.is_some()
            }
            OrderMarkedAuthorized => self.order_marked_authorized,
            OrderConfirmed => {
                if self.authorization_id.is_none() || self.reserved.len() != self.lines.len() {
                    return Err(SagaError::OutOfOrder("confirmed without stock and payment"));
                }
                self.confirmed
            }
            PaymentCaptured => {
                if !self.confirmed {
                    return Err(SagaError::OutOfOrder(
                        "captured before the order was confirmed",
                    ));
                }
                self.captured
            }
            StockCommitted { sku } => {
                self.has_line(sku)?;
                if !self.reserved.contains(sku) {
                    return Err(SagaError::OutOfOrder(
                        "committed stock that was never reserved",
                    ));
                }
                self.committed.contains(sku)
            }
            CompensationStarted { .. } => self.compensation.is_some(),
            PaymentVoided => self.voided,
            PaymentRefunded => self.refunded,
            LineReleased { sku } => {
                self.has_line(sku)?;
                self.released.contains(sku)
            }
            StockRestored { sku } => {
                self.has_line(sku)?;
                self.restored.contains(sku)
            }
            OrderCancelled => self.order_cancelled,
            CartRestored => {
                if !self.order_cancelled {
                    return Err(SagaError::OutOfOrder(
                        "cart restored before the order was cancelled",
                    ));
                }
                self.cart_restored
            }
            ReturnStarted => self.returning,
            OrderMarkedRefunded => self.order_marked_refunded,
            DeliveryNoted { .. } => self.settle_at.is_some(),
            ReturnsClosed => {
                if self.settle_at.is_none() {
                    return Err(SagaError::OutOfOrder("returns closed before delivery"));
                }
                self.returns_closed
            }
            StockSettled { sku } => {
                self.has_line(sku)?;
                if !self.returns_closed || !self.committed.contains(sku) {
                    return Err(SagaError::OutOfOrder(
                        "settled stock that was not sold or still returnable",
                    ));
                }
                self.settled.contains(sku)
            }
            SagaCompleted { outcome } => self.outcome == Some(*outcome),
        };
        if repeat {
            return Ok(None);
        }
        if let Some(outcome) = self.outcome {
            // A completed saga takes no step but what follows a confirmed order (a cancellation,
            // a return, or its sale becoming final): a worker that outlived its lease cannot
            // reopen what its successor closed.
            let after_confirmation = matches!(
                event,
                CompensationStarted { .. }
                    | PaymentRefunded
                    | StockRestored { .. }
                    | OrderCancelled
                    | CartRestored
                    | ReturnStarted
                    | OrderMarkedRefunded
                    | DeliveryNoted { .. }
                    | ReturnsClosed
                    | StockSettled { .. }
                    | SagaCompleted {
                        outcome: SagaOutcome::Cancelled | SagaOutcome::Refunded
                    }
            );
            if outcome != SagaOutcome::Confirmed || !after_confirmation {
                return Err(SagaError::Completed);
            }
        }
        Ok(Some(event))
    }

    /// What to do next, given what the saga recorded and what it sees now.
    pub fn next_action(&self, facts: &Facts) -> SagaAction {
        if self.order_id.is_none() {
            return match facts.order_status {
                Some(_) => SagaAction::Start,
                None => SagaAction::Idle,
            };
        }
        // The buyer (or an admin) cancelled the order, or sent it back.
        if facts.order_status == Some(OrderStatus::Cancelled) && self.compensation.is_none() {
            let reason = facts
                .cancellation_reason
                .clone()
                .unwrap_or_else(|| "cancelled".to_owned());
            return SagaAction::Compensate(reason);
        }
        if facts.order_status == Some(OrderStatus::Returned) && !self.returning {
            return SagaAction::StartReturn;
        }
        if let Some(reason) = &self.compensation {
            return self.next_compensation(reason);
        }
        if self.returning {
            return self.next_return();
        }
        if self.outcome == Some(SagaOutcome::Confirmed) {
            return self.next_settlement(facts);
        }
        if self.outcome.is_some() {
            return SagaAction::Idle;
        }
        let held_too_long = self.hold_expires_at.is_some_and(|at| facts.now >= at);
        if held_too_long && self.authorization_id.is_none() {
            return SagaAction::Compensate(
                "the items could not be held any longer while waiting for payment".to_owned(),
            );
        }
        if let Some(line) = self.lines.iter().find(|l| !self.reserved.contains(&l.sku)) {
            return SagaAction::Reserve(line.clone());
        }
        if !self.order_marked_reserved {
            return SagaAction::MarkOrderReserved;
        }
        let Some(deadline) = self.authorization_deadline else {
            return SagaAction::RequestAuthorization;
        };
        if self.authorization_id.is_none() {
            if facts.now >= deadline {
                return SagaAction::Compensate(
                    "the payment provider did not answer in time".to_owned(),
                );
            }
            return SagaAction::Authorize { deadline };
        }
        if !self.order_marked_authorized {
            return SagaAction::MarkOrderAuthorized;
        }
        if !self.confirmed {
            return SagaAction::ConfirmOrder;
        }
        if !self.captured {
            return SagaAction::Capture;
        }
        if let Some(line) = self.lines.iter().find(|l| !self.committed.contains(&l.sku)) {
            return SagaAction::Commit(line.clone());
        }
        SagaAction::Complete(SagaOutcome::Confirmed)
    }

    /// Undo in reverse: the money, then the stock, then the order, then the cart it closed.
    fn next_compensation(&self, reason: &str) -> SagaAction {
        if self.captured && !self.refunded {
            return SagaAction::RefundPayment;
        }
        // An unanswered authorisation may still land: void it too.
        if self.authorization_deadline.is_some() && !self.captured && !self.voided {
            return SagaAction::VoidPayment;
        }
        for line in &self.lines {
            if self.committed.contains(&line.sku) && !self.restored.contains(&line.sku) {
                return SagaAction::Restore(line.clone());
            }
            let held = self.reserved.contains(&line.sku) && !self.committed.contains(&line.sku);
            if held && !self.released.contains(&line.sku) {
                return SagaAction::Release(line.clone());
            }
        }
        if !self.order_cancelled {
            return SagaAction::CancelOrder(reason.to_owned());
        }
        // A saga that completed as cancelled before carts were given back stays as it ended.
        let completed = self.outcome == Some(SagaOutcome::Cancelled);
        if !self.cart_restored && !completed && self.buyer_id.is_some() {
            return SagaAction::RestoreCart;
        }
        if !completed {
            return SagaAction::Complete(SagaOutcome::Cancelled);
        }
        SagaAction::Idle
    }

    /// A confirmed order, once delivered, becomes final when its return window closes: the
    /// order is closed for returns, then each SKU forgets the order's commitment.
    fn next_settlement(&self, facts: &Facts) -> SagaAction {
        if facts.order_status != Some(OrderStatus::Delivered) {
            return SagaAction::Idle;
        }
        let Some(settle_at) = self.settle_at else {
            return SagaAction::NoteDelivery;
        };
        if facts.now < settle_at {
            return SagaAction::Idle;
        }
        if !self.returns_closed {
            return SagaAction::CloseReturns;
        }
        match self.lines.iter().find(|l| self.unsettled(&l.sku)) {
            Some(line) => SagaAction::Settle(line.clone()),
            None => SagaAction::Idle,
        }
    }

    fn unsettled(&self, sku: &Sku) -> bool {
        self.committed.contains(sku) && !self.restored.contains(sku) && !self.settled.contains(sku)
    }

    /// Where the saga stands, in one word for operators: `not_started`, `reserving`,
    /// `authorizing`, `confirming`, `confirmed`, `compensating`, `cancelled`, `returning` or
    /// `refunded` (see [`Self::STAGES`]). A confirmed saga stays `confirmed` while its sale
    /// becomes final; one being cancelled or returned after confirmation is `compensating` or
    /// `returning` until it completes again.
    pub fn stage(&self) -> &'static str {
        match self.outcome {
            Some(SagaOutcome::Cancelled) => return "cancelled",
            Some(SagaOutcome::Refunded) => return "refunded",
            _ => {}
        }
        if self.order_id.is_none() {
            "not_started"
        } else if self.returning {
            "returning"
        } else if self.compensation.is_some() {
            "compensating"
        } else if self.outcome == Some(SagaOutcome::Confirmed) {
            "confirmed"
        } else if self.reserved.len() < self.lines.len() || !self.order_marked_reserved {
            "reserving"
        } else if !self.order_marked_authorized {
            "authorizing"
        } else {
            "confirming"
        }
    }

    /// Every value [`Self::stage`] returns.
    pub const STAGES: &'static [&'static str] = &[
        "not_started",
        "reserving",
        "authorizing",
        "confirming",
        "confirmed",
        "compensating",
        "cancelled",
        "returning",
        "refunded",
    ];

    /// When the saga must be looked at again though nothing happens to its order: the close
    /// of a delivered order's return window, until its sale is final.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        let pending = !self.returns_closed || self.lines.iter().any(|l| self.unsettled(&l.sku));
        self.settle_at.filter(|_| pending && !self.returning)
    }

    /// A return: refund, put the stock back, mark the order refunded.
    fn next_return(&self) -> SagaAction {
        if self.captured && !self.refunded {
            return SagaAction::RefundPayment;
        }
        if let Some(line) = self
            .lines
            .iter()
            .find(|l| self.committed.contains(&l.sku) && !self.restored.contains(&l.sku))
        {
            return SagaAction::Restore(line.clone());
        }
        if !self.order_marked_refunded {
            return SagaAction::MarkOrderRefunded;
        }
        if self.outcome != Some(SagaOutcome::Refunded) {
            return SagaAction::Complete(SagaOutcome::Refunded);
        }
        SagaAction::Idle
    }
}

impl Aggregate for CheckoutSaga {
    const TYPE: &'static str = "checkout_saga";
    type Command = SagaCommand;
    type Event = SagaEvent;
    type Error = SagaError;
    type Services = ();

    async fn handle(
        &mut self,
        command: SagaCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), SagaError> {
        let SagaCommand::Record(event) = command;
        if let Some(event) = self.check(event)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: SagaEvent) {
        use SagaEvent::*;
        match event {
            SagaStarted {
                order_id,
                buyer_id,
                lines,
                total,
                payment_id,
                started_at,
                hold_expires_at,
            } => {
                self.order_id = Some(order_id);
                self.buyer_id = Some(buyer_id);
                self.lines = lines;
                self.total = Some(total);
                self.payment_id = Some(payment_id);
                self.started_at = Some(started_at);
                self.hold_expires_at = Some(hold_expires_at);
            }
            LineReserved { sku } => {
                self.reserved.insert(sku);
            }
            OrderMarkedReserved => self.order_marked_reserved = true,
            AuthorizationRequested { deadline, .. } => self.authorization_deadline = Some(deadline),
            PaymentAuthorized { authorization_id } => {
                self.authorization_id = Some(authorization_id)
            }
            OrderMarkedAuthorized => self.order_marked_authorized = true,
            OrderConfirmed => self.confirmed = true,
            PaymentCaptured => self.captured = true,
            StockCommitted { sku } => {
                self.committed.insert(sku);
            }
            CompensationStarted { reason } => self.compensation = Some(reason),
            PaymentVoided => self.voided = true,
            PaymentRefunded => self.refunded = true,
            LineReleased { sku } => {
                self.released.insert(sku);
            }
            StockRestored { sku } => {
                self.restored.insert(sku);
            }
            OrderCancelled => self.order_cancelled = true,
            CartRestored => self.cart_restored = true,
            ReturnStarted => self.returning = true,
            OrderMarkedRefunded => self.order_marked_refunded = true,
            DeliveryNoted { settle_at } => self.settle_at = Some(settle_at),
            ReturnsClosed => self.returns_closed = true,
            StockSettled { sku } => {
                self.settled.insert(sku);
            }
            SagaCompleted { outcome } => self.outcome = Some(outcome),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::{Currency, ProductId};

    type SagaTest = TestFramework<CheckoutSaga>;

    fn eur(amount: i64) -> Money {
        Money::new(amount, Currency::parse("EUR").unwrap())
    }

    fn line(sku: &str) -> OrderLine {
        OrderLine {
            sku: Sku::parse(sku).unwrap(),
            product_id: ProductId(uuid::Uuid::from_u128(1)),
            seller_id: AccountId(uuid::Uuid::from_u128(2)),
            quantity: 1,
            unit_price: eur(500),
        }
    }

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn started() -> SagaEvent {
        SagaEvent::SagaStarted {
            order_id: OrderId(uuid::Uuid::from_u128(9)),
            buyer_id: AccountId(uuid::Uuid::from_u128(3)),
            lines: vec![line("A"), line("B")],
            total: eur(1000),
            payment_id: PaymentId(uuid::Uuid::from_u128(4)),
            started_at: t0(),
            hold_expires_at: t0() + Duration::minutes(15),
        }
    }

    fn sku(s: &str) -> Sku {
        Sku::parse(s).unwrap()
    }

    fn saga(events: Vec<SagaEvent>) -> CheckoutSaga {
        let mut saga = CheckoutSaga::default();
        for event in events {
            saga.apply(event);
        }
        saga
    }

    fn facts(status: OrderStatus, now: DateTime<Utc>) -> Facts {
        Facts {
            now,
            order_status: Some(status),
            cancellation_reason: None,
        }
    }

    fn requested() -> SagaEvent {
        SagaEvent::AuthorizationRequested {
            at: t0(),
            deadline: t0() + Duration::seconds(30),
        }
    }

    #[test]
    fn the_stage_follows_the_saga_from_start_to_outcome() {
        use SagaEvent::*;
        let a = || LineReserved { sku: sku("A") };
        let b = || LineReserved { sku: sku("B") };
        assert_eq!(CheckoutSaga::default().stage(), "not_started");
        assert_eq!(saga(vec![started(), a()]).stage(), "reserving");
        let reserved = vec![started(), a(), b(), OrderMarkedReserved];
        assert_eq!(saga(reserved.clone()).stage(), "authorizing");
        let authorized = [
            reserved.clone(),
            vec![
                requested(),
                PaymentAuthorized {
                    authorization_id: "auth".into(),
                },
                OrderMarkedAuthorized,
            ],
        ]
        .concat();
        assert_eq!(saga(authorized.clone()).stage(), "confirming");
        let confirmed = [
            authorized,
            vec![SagaCompleted {
                outcome: SagaOutcome::Confirmed,
            }],
        ]
        .concat();
        assert_eq!(saga(confirmed.clone()).stage(), "confirmed");
        let cancelling = [
            confirmed,
            vec![CompensationStarted {
                reason: "buyer".into(),
            }],
        ]
        .concat();
        assert_eq!(saga(cancelling.clone()).stage(), "compensating");
        let cancelled = [
            cancelling,
            vec![SagaCompleted {
                outcome: SagaOutcome::Cancelled,
            }],
        ]
        .concat();
        assert_eq!(saga(cancelled).stage(), "cancelled");
        assert!(CheckoutSaga::STAGES.contains(&saga(reserved).stage()));
    }

    #[test]
    fn a_step_is_recorded_once() {
        SagaTest::with(())
            .given(vec![started(), SagaEvent::LineReserved { sku: sku("A") }])
            .when(SagaCommand::Record(SagaEvent::LineReserved {
                sku: sku("A"),
            }))
            .then_expect_events(vec![]);
    }

    #[test]
    fn nothing_is_recorded_before_the_start() {
        SagaTest::with(())
            .given_no_previous_events()
            .when(SagaCommand::Record(SagaEvent::OrderConfirmed))
            .then_expect_error(SagaError::NotStarted);
    }

    #[test]
    fn an_order_is_confirmed_only_with_all_stock_and_payment() {
        SagaTest::with(())
            .given(vec![started(), SagaEvent::LineReserved { sku: sku("A") }])
            .when(SagaCommand::Record(SagaEvent::OrderConfirmed))
            .then_expect_error(SagaError::OutOfOrder("confirmed without stock and payment"));
    }

    fn cancelled_before_payment() -> Vec<SagaEvent> {
        vec![
            started(),
            SagaEvent::LineReserved { sku: sku("A") },
            requested(),
            SagaEvent::CompensationStarted {
                reason: "the payment provider did not answer in time".into(),
            },
            SagaEvent::PaymentVoided,
            SagaEvent::LineReleased { sku: sku("A") },
            SagaEvent::OrderCancelled,
            SagaEvent::SagaCompleted {
                outcome: SagaOutcome::Cancelled,
            },
        ]
    }

    #[test]
    fn no_step_is_recorded_after_the_saga_completed() {
        for late in [
            SagaEvent::LineReserved { sku: sku("B") },
            SagaEvent::OrderMarkedReserved,
            SagaEvent::ReturnStarted,
            SagaEvent::SagaCompleted {
                outcome: SagaOutcome::Confirmed,
            },
        ] {
            SagaTest::with(())
                .given(cancelled_before_payment())
                .when(SagaCommand::Record(late))
                .then_expect_error(SagaError::Completed);
        }
        // A repeat of a recorded step is still a no-op, not an error.
        SagaTest::with(())
            .given(cancelled_before_payment())
            .when(SagaCommand::Record(SagaEvent::LineReserved {
                sku: sku("A"),
            }))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_completed_confirmed_saga_takes_only_undoing_steps() {
        let mut confirmed = vec![started()];
        for s in ["A", "B"] {
            confirmed.push(SagaEvent::LineReserved { sku: sku(s) });
        }
        confirmed.extend([
            requested(),
            SagaEvent::PaymentAuthorized {
                authorization_id: "x".into(),
            },
            SagaEvent::OrderConfirmed,
            SagaEvent::PaymentCaptured,
            SagaEvent::SagaCompleted {
                outcome: SagaOutcome::Confirmed,
            },
        ]);
        SagaTest::with(())
            .given(confirmed.clone())
            .when(SagaCommand::Record(SagaEvent::ReturnStarted))
            .then_expect_events(vec![SagaEvent::ReturnStarted]);
        SagaTest::with(())
            .given(confirmed)
            .when(SagaCommand::Record(SagaEvent::PaymentVoided))
            .then_expect_error(SagaError::Completed);
    }

    /// Both lines reserved, paid, confirmed, captured and sold: the saga completed.
    fn confirmed_and_completed() -> Vec<SagaEvent> {
        let mut events = vec![started()];
        for s in ["A", "B"] {
            events.push(SagaEvent::LineReserved { sku: sku(s) });
        }
        events.extend([
            SagaEvent::OrderMarkedReserved,
            requested(),
            SagaEvent::PaymentAuthorized {
                authorization_id: "x".into(),
            },
            SagaEvent::OrderMarkedAuthorized,
            SagaEvent::OrderConfirmed,
            SagaEvent::PaymentCaptured,
            SagaEvent::StockCommitted { sku: sku("A") },
            SagaEvent::StockCommitted { sku: sku("B") },
            SagaEvent::SagaCompleted {
                outcome: SagaOutcome::Confirmed,
            },
        ]);
        events
    }

    #[test]
    fn a_delivered_order_becomes_final_when_its_return_window_closes() {
        let mut events = confirmed_and_completed();
        let now = t0() + Duration::days(1);
        assert_eq!(
            saga(events.clone()).next_action(&facts(OrderStatus::Shipped, now)),
            SagaAction::Idle
        );
        let delivered = facts(OrderStatus::Delivered, now);
        assert_eq!(
            saga(events.clone()).next_action(&delivered),
            SagaAction::NoteDelivery
        );
        let settle_at = now + Duration::days(30);
        events.push(SagaEvent::DeliveryNoted { settle_at });
        assert_eq!(
            saga(events.clone()).next_action(&delivered),
            SagaAction::Idle
        );
        assert_eq!(saga(events.clone()).next_due(), Some(settle_at));
        let closed = facts(OrderStatus::Delivered, settle_at);
        assert_eq!(
            saga(events.clone()).next_action(&closed),
            SagaAction::CloseReturns
        );
        events.push(SagaEvent::ReturnsClosed);
        assert_eq!(
            saga(events.clone()).next_action(&closed),
            SagaAction::Settle(line("A"))
        );
        events.push(SagaEvent::StockSettled { sku: sku("A") });
        events.push(SagaEvent::StockSettled { sku: sku("B") });
        assert_eq!(saga(events.clone()).next_action(&closed), SagaAction::Idle);
        assert_eq!(saga(events.clone()).next_due(), None);
        // A return before the window closed takes the return path instead.
        let returned = facts(OrderStatus::Returned, now);
        let mut before_close = events[..events.len() - 3].to_vec();
        assert_eq!(
            saga(before_close.clone()).next_action(&returned),
            SagaAction::StartReturn
        );
        before_close.push(SagaEvent::ReturnStarted);
        assert_eq!(saga(before_close).next_due(), None);
    }

    #[test]
    fn stock_is_settled_only_after_returns_closed() {
        let mut events = vec![started(), SagaEvent::LineReserved { sku: sku("A") }];
        events.push(SagaEvent::StockCommitted { sku: sku("A") });
        SagaTest::with(())
            .given(events)
            .when(SagaCommand::Record(SagaEvent::StockSettled {
                sku: sku("A"),
            }))
            .then_expect_error(SagaError::OutOfOrder(
                "settled stock that was not sold or still returnable",
            ));
    }

    #[test]
    fn no_authorisation_is_recorded_after_compensation_started() {
        SagaTest::with(())
            .given(vec![
                started(),
                requested(),
                SagaEvent::CompensationStarted {
                    reason: "the payment provider did not answer in time".into(),
                },
            ])
            .when(SagaCommand::Record(SagaEvent::PaymentAuthorized {
                authorization_id: "late".into(),
            }))
            .then_expect_error(SagaError::OutOfOrder(
                "authorised after compensation started",
            ));
    }

    #[test]
    fn only_the_orders_lines_are_reserved() {
        SagaTest::with(())
            .given(vec![started()])
            .when(SagaCommand::Record(SagaEvent::LineReserved {
                sku: sku("Z"),
            }))
            .then_expect_error(SagaError::UnknownLine(sku("Z")));
    }

    #[test]
    fn the_happy_path_reserves_every_line_then_authorises_confirms_captures_and_commits() {
        let mut events = vec![started()];
        let now = t0() + Duration::seconds(1);
        let mut order = OrderStatus::Pending;
        let mut steps = Vec::new();
        loop {
            let action = saga(events.clone()).next_action(&facts(order, now));
            steps.push(
                format!("{action:?}")
                    .split(['(', ' '])
                    .next()
                    .unwrap()
                    .to_owned(),
            );
            let event = match action {
                SagaAction::Reserve(line) => SagaEvent::LineReserved { sku: line.sku },
                SagaAction::MarkOrderReserved => {
                    order = OrderStatus::Reserved;
                    SagaEvent::OrderMarkedReserved
                }
                SagaAction::RequestAuthorization => requested(),
                SagaAction::Authorize { .. } => SagaEvent::PaymentAuthorized {
                    authorization_id: "auth".into(),
                },
                SagaAction::MarkOrderAuthorized => SagaEvent::OrderMarkedAuthorized,
                SagaAction::ConfirmOrder => SagaEvent::OrderConfirmed,
                SagaAction::Capture => SagaEvent::PaymentCaptured,
                SagaAction::Commit(line) => SagaEvent::StockCommitted { sku: line.sku },
                SagaAction::Complete(outcome) => SagaEvent::SagaCompleted { outcome },
                SagaAction::Idle => break,
                other => panic!("unexpected {other:?}"),
            };
            events.push(event);
        }
        assert_eq!(
            steps,
            [
                "Reserve",
                "Reserve",
                "MarkOrderReserved",
                "RequestAuthorization",
                "Authorize",
                "MarkOrderAuthorized",
                "ConfirmOrder",
                "Capture",
                "Commit",
                "Commit",
                "Complete",
                "Idle"
            ]
        );
    }

    #[test]
    fn a_refused_line_releases_the_lines_already_reserved_then_cancels() {
        let events = vec![
            started(),
            SagaEvent::LineReserved { sku: sku("A") },
            SagaEvent::CompensationStarted {
                reason: "out of stock: B".into(),
            },
        ];
        let now = t0();
        assert_eq!(
            saga(events.clone()).next_action(&facts(OrderStatus::Pending, now)),
            SagaAction::Release(line("A"))
        );
        let mut released = events;
        released.push(SagaEvent::LineReleased { sku: sku("A") });
        assert_eq!(
            saga(released.clone()).next_action(&facts(OrderStatus::Pending, now)),
            SagaAction::CancelOrder("out of stock: B".into())
        );
        released.push(SagaEvent::OrderCancelled);
        assert_eq!(
            saga(released.clone()).next_action(&facts(OrderStatus::Cancelled, now)),
            SagaAction::RestoreCart
        );
        released.push(SagaEvent::CartRestored);
        assert_eq!(
            saga(released).next_action(&facts(OrderStatus::Cancelled, now)),
            SagaAction::Complete(SagaOutcome::Cancelled)
        );
    }

    #[test]
    fn an_unanswered_authorisation_times_out_and_is_voided_just_in_case() {
        let events = vec![
            started(),
            SagaEvent::LineReserved { sku: sku("A") },
            SagaEvent::LineReserved { sku: sku("B") },
            SagaEvent::OrderMarkedReserved,
            requested(),
        ];
        let late = t0() + Duration::seconds(31);
        assert!(matches!(
            saga(events.clone()).next_action(&facts(OrderStatus::Reserved, late)),
            SagaAction::Compensate(_)
        ));
        assert!(matches!(
            saga(events.clone()).next_action(&facts(OrderStatus::Reserved, t0())),
            SagaAction::Authorize { .. }
        ));
        let mut compensating = events;
        compensating.push(SagaEvent::CompensationStarted {
            reason: "timeout".into(),
        });
        assert_eq!(
            saga(compensating).next_action(&facts(OrderStatus::Reserved, late)),
            SagaAction::VoidPayment
        );
    }

    #[test]
    fn a_hold_that_expires_before_payment_is_released() {
        let events = vec![started(), SagaEvent::LineReserved { sku: sku("A") }];
        let expired = t0() + Duration::minutes(16);
        assert!(matches!(
            saga(events).next_action(&facts(OrderStatus::Pending, expired)),
            SagaAction::Compensate(_)
        ));
    }

    #[test]
    fn the_buyer_cancelling_a_confirmed_order_refunds_and_restores_stock() {
        let mut events = confirmed_and_completed();
        let cancelled = Facts {
            now: t0(),
            order_status: Some(OrderStatus::Cancelled),
            cancellation_reason: Some("changed my mind".into()),
        };
        assert_eq!(
            saga(events.clone()).next_action(&cancelled),
            SagaAction::Compensate("changed my mind".into())
        );
        events.push(SagaEvent::CompensationStarted {
            reason: "changed my mind".into(),
        });
        assert_eq!(
            saga(events.clone()).next_action(&cancelled),
            SagaAction::RefundPayment
        );
        events.push(SagaEvent::PaymentRefunded);
        assert_eq!(
            saga(events).next_action(&cancelled),
            SagaAction::Restore(line("A"))
        );
    }

    #[test]
    fn the_cart_is_given_back_once_after_the_order_is_cancelled() {
        SagaTest::with(())
            .given(vec![
                started(),
                SagaEvent::CompensationStarted {
                    reason: "out of stock: A".into(),
                },
            ])
            .when(SagaCommand::Record(SagaEvent::CartRestored))
            .then_expect_error(SagaError::OutOfOrder(
                "cart restored before the order was cancelled",
            ));
        let restored = vec![
            started(),
            SagaEvent::CompensationStarted {
                reason: "out of stock: A".into(),
            },
            SagaEvent::OrderCancelled,
            SagaEvent::CartRestored,
        ];
        SagaTest::with(())
            .given(restored)
            .when(SagaCommand::Record(SagaEvent::CartRestored))
            .then_expect_events(vec![]);
        // A saga that completed before carts were given back is not reopened for it.
        assert_eq!(
            saga(cancelled_before_payment()).next_action(&facts(OrderStatus::Cancelled, t0())),
            SagaAction::Idle
        );
    }

    #[test]
    fn the_buyer_cancelling_a_confirmed_order_gets_the_cart_back() {
        let mut events = confirmed_and_completed();
        events.extend([
            SagaEvent::CompensationStarted {
                reason: "changed my mind".into(),
            },
            SagaEvent::PaymentRefunded,
            SagaEvent::StockRestored { sku: sku("A") },
            SagaEvent::StockRestored { sku: sku("B") },
            SagaEvent::OrderCancelled,
        ]);
        let cancelled = facts(OrderStatus::Cancelled, t0());
        assert_eq!(
            saga(events.clone()).next_action(&cancelled),
            SagaAction::RestoreCart
        );
        SagaTest::with(())
            .given(events)
            .when(SagaCommand::Record(SagaEvent::CartRestored))
            .then_expect_events(vec![SagaEvent::CartRestored]);
    }

    #[test]
    fn a_returned_order_is_refunded() {
        let mut events = vec![
            started(),
            SagaEvent::LineReserved { sku: sku("A") },
            SagaEvent::LineReserved { sku: sku("B") },
            SagaEvent::OrderMarkedReserved,
            requested(),
            SagaEvent::PaymentAuthorized {
                authorization_id: "x".into(),
            },
            SagaEvent::OrderMarkedAuthorized,
            SagaEvent::OrderConfirmed,
            SagaEvent::PaymentCaptured,
        ];
        events.push(SagaEvent::SagaCompleted {
            outcome: SagaOutcome::Confirmed,
        });
        assert_eq!(
            saga(events.clone()).next_action(&facts(OrderStatus::Returned, t0())),
            SagaAction::StartReturn
        );
        events.push(SagaEvent::ReturnStarted);
        assert_eq!(
            saga(events).next_action(&facts(OrderStatus::Returned, t0())),
            SagaAction::RefundPayment
        );
    }
}

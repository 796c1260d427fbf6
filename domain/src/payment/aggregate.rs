use std::fmt;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{PaymentCommand, PaymentError, PaymentEvent};
use crate::{Money, OrderId};

/// Where a payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Requested,
    Authorized,
    Declined,
    /// The provider did not answer in time: the authorisation may still land, and is voided.
    TimedOut,
    Captured,
    Voided,
    Refunded,
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Requested => "requested",
            Self::Authorized => "authorized",
            Self::Declined => "declined",
            Self::TimedOut => "timed_out",
            Self::Captured => "captured",
            Self::Voided => "voided",
            Self::Refunded => "refunded",
        };
        f.write_str(name)
    }
}

/// One order's payment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    pub status: Option<PaymentStatus>,
    pub order_id: Option<OrderId>,
    pub authorized: Option<Money>,
    /// The provider's reference for the authorisation, once it was given.
    #[serde(default)]
    pub authorization_id: Option<String>,
    pub captured: Option<Money>,
    pub refunded: Option<Money>,
}

impl Payment {
    fn expect(&self, from: PaymentStatus, action: &'static str) -> Result<(), PaymentError> {
        match self.status {
            None => Err(PaymentError::NotRequested),
            Some(status) if status == from => Ok(()),
            Some(status) => Err(PaymentError::InvalidTransition {
                from: status,
                action,
            }),
        }
    }

    /// `amount` is positive, in the right currency and within `limit`.
    fn within(amount: Money, limit: Option<Money>) -> Result<Money, PaymentError> {
        let limit = limit.ok_or(PaymentError::NotRequested)?;
        if amount.amount <= 0 || amount.currency != limit.currency || amount.amount > limit.amount {
            return Err(PaymentError::InvalidAmount {
                limit: limit.amount,
            });
        }
        Ok(amount)
    }

    fn decide(&self, command: PaymentCommand) -> Result<PaymentEvent, PaymentError> {
        use PaymentStatus::*;
        match command {
            PaymentCommand::Request { order_id, amount } => {
                if self.status.is_some() {
                    return Err(PaymentError::AlreadyRequested);
                }
                if amount.amount <= 0 {
                    return Err(PaymentError::InvalidAmount { limit: i64::MAX });
                }
                Ok(PaymentEvent::PaymentRequested { order_id, amount })
            }
            PaymentCommand::RecordAuthorized { authorization_id } => {
                self.expect(Requested, "authorized")?;
                Ok(PaymentEvent::PaymentAuthorized { authorization_id })
            }
            PaymentCommand::RecordDeclined { reason } => {
                self.expect(Requested, "declined")?;
                Ok(PaymentEvent::PaymentDeclined { reason })
            }
            PaymentCommand::RecordTimedOut => {
                self.expect(Requested, "timed out")?;
                Ok(PaymentEvent::PaymentTimedOut)
            }
            PaymentCommand::Capture { amount } => {
                self.expect(Authorized, "captured")?;
                Ok(PaymentEvent::PaymentCaptured {
                    amount: Self::within(amount, self.authorized)?,
                })
            }
            PaymentCommand::Void => {
                // An authorisation whose answer has not come yet is voided too: once voided
                // here, a late answer cannot be recorded. (A timed-out one already refuses it.)
                match self.status {
                    Some(Requested) => Ok(PaymentEvent::PaymentVoided),
                    _ => self
                        .expect(Authorized, "voided")
                        .map(|()| PaymentEvent::PaymentVoided),
                }
            }
            PaymentCommand::Refund { amount } => {
                self.expect(Captured, "refunded")?;
                Ok(PaymentEvent::PaymentRefunded {
                    amount: Self::within(amount, self.captured)?,
                })
            }
        }
    }
}

impl Aggregate for Payment {
    const TYPE: &'static str = "payment";
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = PaymentError;
    type Services = ();

    async fn handle(
        &mut self,
        command: PaymentCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), PaymentError> {
        let event = self.decide(command)?;
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: PaymentEvent) {
        use PaymentStatus::*;
        self.status = Some(match event {
            PaymentEvent::PaymentRequested { order_id, amount } => {
                self.order_id = Some(order_id);
                self.authorized = Some(amount);
                Requested
            }
            PaymentEvent::PaymentAuthorized { authorization_id } => {
                self.authorization_id = Some(authorization_id);
                Authorized
            }
            PaymentEvent::PaymentDeclined { .. } => {
                self.authorized = None;
                Declined
            }
            PaymentEvent::PaymentTimedOut => TimedOut,
            PaymentEvent::PaymentCaptured { amount } => {
                self.captured = Some(amount);
                Captured
            }
            PaymentEvent::PaymentVoided => Voided,
            PaymentEvent::PaymentRefunded { amount } => {
                self.refunded = Some(amount);
                Refunded
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::Currency;

    type PaymentTest = TestFramework<Payment>;

    fn eur(amount: i64) -> Money {
        Money::new(amount, Currency::parse("EUR").unwrap())
    }

    fn requested() -> PaymentEvent {
        PaymentEvent::PaymentRequested {
            order_id: OrderId(uuid::Uuid::from_u128(1)),
            amount: eur(1000),
        }
    }

    fn authorized() -> Vec<PaymentEvent> {
        vec![
            requested(),
            PaymentEvent::PaymentAuthorized {
                authorization_id: "auth_1".into(),
            },
        ]
    }

    #[test]
    fn a_payment_is_requested_once() {
        PaymentTest::with(())
            .given(vec![requested()])
            .when(PaymentCommand::Request {
                order_id: OrderId::new(),
                amount: eur(5),
            })
            .then_expect_error(PaymentError::AlreadyRequested);
    }

    #[test]
    fn authorisation_happens_at_most_once() {
        PaymentTest::with(())
            .given(authorized())
            .when(PaymentCommand::RecordAuthorized {
                authorization_id: "auth_2".into(),
            })
            .then_expect_error(PaymentError::InvalidTransition {
                from: PaymentStatus::Authorized,
                action: "authorized",
            });
    }

    #[test]
    fn a_capture_never_exceeds_the_authorised_amount() {
        PaymentTest::with(())
            .given(authorized())
            .when(PaymentCommand::Capture { amount: eur(1001) })
            .then_expect_error(PaymentError::InvalidAmount { limit: 1000 });
        PaymentTest::with(())
            .given(authorized())
            .when(PaymentCommand::Capture { amount: eur(1000) })
            .then_expect_events(vec![PaymentEvent::PaymentCaptured { amount: eur(1000) }]);
    }

    #[test]
    fn capture_happens_at_most_once() {
        let mut given = authorized();
        given.push(PaymentEvent::PaymentCaptured { amount: eur(1000) });
        PaymentTest::with(())
            .given(given)
            .when(PaymentCommand::Capture { amount: eur(1) })
            .then_expect_error(PaymentError::InvalidTransition {
                from: PaymentStatus::Captured,
                action: "captured",
            });
    }

    #[test]
    fn a_captured_payment_cannot_be_voided() {
        let mut given = authorized();
        given.push(PaymentEvent::PaymentCaptured { amount: eur(1000) });
        PaymentTest::with(())
            .given(given)
            .when(PaymentCommand::Void)
            .then_expect_error(PaymentError::InvalidTransition {
                from: PaymentStatus::Captured,
                action: "voided",
            });
    }

    #[test]
    fn void_happens_at_most_once() {
        let mut given = authorized();
        given.push(PaymentEvent::PaymentVoided);
        PaymentTest::with(())
            .given(given)
            .when(PaymentCommand::Void)
            .then_expect_error(PaymentError::InvalidTransition {
                from: PaymentStatus::Voided,
                action: "voided",
            });
    }

    #[test]
    fn a_refund_needs_a_capture_and_never_exceeds_it() {
        PaymentTest::with(())
            .given(authorized())
            .when(PaymentCommand::Refund { amount: eur(10) })
            .then_expect_error(PaymentError::InvalidTransition {
                from: PaymentStatus::Authorized,
                action: "refunded",
            });
        let mut given = authorized();
        given.push(PaymentEvent::PaymentCaptured { amount: eur(800) });
        PaymentTest::with(())
            .given(given.clone())
            .when(PaymentCommand::Refund { amount: eur(801) })
            .then_expect_error(PaymentError::InvalidAmount { limit: 800 });
        given.push(PaymentEvent::PaymentRefunded { amount: eur(800) });
        PaymentTest::with(())
            .given(given)
            .when(PaymentCommand::Refund { amount: eur(1) })
            .then_expect_error(PaymentError::InvalidTransition {
                from: PaymentStatus::Refunded,
                action: "refunded",
            });
    }

    #[test]
    fn no_authorisation_is_recorded_after_a_void() {
        PaymentTest::with(())
            .given(vec![requested(), PaymentEvent::PaymentVoided])
            .when(PaymentCommand::RecordAuthorized {
                authorization_id: "late".into(),
            })
            .then_expect_error(PaymentError::InvalidTransition {
                from: PaymentStatus::Voided,
                action: "authorized",
            });
    }

    #[test]
    fn an_unanswered_authorisation_can_be_voided() {
        PaymentTest::with(())
            .given(vec![requested()])
            .when(PaymentCommand::Void)
            .then_expect_events(vec![PaymentEvent::PaymentVoided]);
        PaymentTest::with(())
            .given(vec![requested(), PaymentEvent::PaymentTimedOut])
            .when(PaymentCommand::Void)
            .then_expect_error(PaymentError::InvalidTransition {
                from: PaymentStatus::TimedOut,
                action: "voided",
            });
    }

    #[test]
    fn a_timeout_is_its_own_outcome_and_takes_no_late_answer() {
        PaymentTest::with(())
            .given(vec![requested()])
            .when(PaymentCommand::RecordTimedOut)
            .then_expect_events(vec![PaymentEvent::PaymentTimedOut]);
        PaymentTest::with(())
            .given(vec![requested(), PaymentEvent::PaymentTimedOut])
            .when(PaymentCommand::RecordAuthorized {
                authorization_id: "late".into(),
            })
            .then_expect_error(PaymentError::InvalidTransition {
                from: PaymentStatus::TimedOut,
                action: "authorized",
            });
        PaymentTest::with(())
            .given(authorized())
            .when(PaymentCommand::RecordTimedOut)
            .then_expect_error(PaymentError::InvalidTransition {
                from: PaymentStatus::Authorized,
                action: "timed out",
            });
    }

    #[test]
    fn a_declined_payment_cannot_be_captured() {
        PaymentTest::with(())
            .given(vec![
                requested(),
                PaymentEvent::PaymentDeclined {
                    reason: "card declined".into(),
                },
            ])
            .when(PaymentCommand::Capture { amount: eur(1) })
            .then_expect_error(PaymentError::InvalidTransition {
                from: PaymentStatus::Declined,
                action: "captured",
            });
    }
}

use std::fmt;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{OrderCommand, OrderError, OrderEvent, OrderLine};
use crate::privacy::Personal;
use crate::{AccountId, Money, PaymentId, ShippingMethodId};

/// Where an order stands. The names are the API's `status` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    Pending,
    Reserved,
    Authorized,
    Confirmed,
    Shipped,
    Delivered,
    Returned,
    Refunded,
    Cancelled,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Reserved => "reserved",
            Self::Authorized => "authorized",
            Self::Confirmed => "confirmed",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Returned => "returned",
            Self::Refunded => "refunded",
            Self::Cancelled => "cancelled",
        }
    }

    /// Before the order leaves the warehouse it can still be cancelled.
    pub fn cancellable(self) -> bool {
        matches!(
            self,
            Self::Pending | Self::Reserved | Self::Authorized | Self::Confirmed
        )
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An order and where it stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// `None` until placed.
    pub status: Option<OrderStatus>,
    pub buyer_id: Option<AccountId>,
    pub lines: Vec<OrderLine>,
    /// The price breakdown: `total = subtotal − discount + shipping + tax`.
    pub subtotal: Option<Money>,
    pub discount: Option<Money>,
    pub shipping: Option<Money>,
    pub tax: Option<Money>,
    pub total: Option<Money>,
    pub promotion_code: Option<String>,
    pub shipping_method_id: Option<ShippingMethodId>,
    /// The payment's reference; the card token itself is only in `payment_tokens`, for the saga.
    pub payment_id: Option<PaymentId>,
    pub shipping_address: Option<Personal>,
    pub cancellation_reason: Option<String>,
    /// The return window of a delivered order has closed: it can no longer be sent back.
    #[serde(default)]
    pub returns_closed: bool,
}

impl Order {
    /// Whether `account` sells any of the order's lines.
    pub fn has_seller(&self, account: AccountId) -> bool {
        self.lines.iter().any(|line| line.seller_id == account)
    }

    /// The one step of the state machine `action` may take, from `from` to the event.
    fn step(
        &self,
        from: OrderStatus,
        action: &'static str,
        event: OrderEvent,
    ) -> Result<OrderEvent, OrderError> {
        match self.status {
            None => Err(OrderError::NotPlaced),
            Some(status) if status == from => Ok(event),
            Some(status) => Err(OrderError::InvalidTransition {
                from: status,
                action,
            }),
        }
    }

    fn decide(&self, command: OrderCommand) -> Result<OrderEvent, OrderError> {
        use OrderStatus::*;
        match command {
            OrderCommand::Place {
                order_id,
                buyer_id,
                lines,
                total,
                shipping_address,
            } => {
                if self.status.is_some() {
                    return Err(OrderError::AlreadyPlaced);
                }
                if lines.is_empty() {
                    return Err(OrderError::NoLines);
                }
                if lines.iter().any(|line| line.quantity == 0) {
                    return Err(OrderError::InvalidInput(
                        "every order line needs a quantity of at least 1".into(),
                    ));
                }
                let sum = lines
                    .iter()
                    .try_fold(Money::zero(total.currency), |sum, line| {
                        sum.plus(line.unit_price.times(line.quantity)?)
                    });
                if sum != Some(total) {
                    return Err(OrderError::TotalMismatch);
                }
                // Until pricing lands an order pays the sum of its lines: nothing off, no
                // shipping or tax.
                let zero = Money::zero(total.currency);
                Ok(OrderEvent::OrderPlaced {
                    buyer_id,
                    lines,
                    subtotal: total,
                    discount: zero,
                    shipping: zero,
                    tax: zero,
                    total,
                    promotion_code: None,
                    shipping_method_id: None,
                    payment_id: PaymentId::for_order(order_id),
                    shipping_address: shipping_address.into(),
                })
            }
            OrderCommand::RecordInventoryReserved => {
                self.step(Pending, "reserved", OrderEvent::InventoryReserved)
            }
            OrderCommand::RecordPaymentAuthorized => {
                self.step(Reserved, "authorized", OrderEvent::PaymentAuthorized)
            }
            OrderCommand::Confirm => self.step(Authorized, "confirmed", OrderEvent::OrderConfirmed),
            OrderCommand::Ship {
                carrier,
                tracking_number,
            } => {
                let carrier = carrier.trim().to_owned();
                let tracking_number = tracking_number.trim().to_owned();
                if carrier.is_empty()
                    || carrier.len() > 100
                    || tracking_number.is_empty()
                    || tracking_number.len() > 100
                {
                    return Err(OrderError::InvalidInput(
                        "carrier and tracking_number must be 1 to 100 characters".into(),
                    ));
                }
                self.step(
                    Confirmed,
                    "shipped",
                    OrderEvent::OrderShipped {
                        carrier,
                        tracking_number,
                    },
                )
            }
            OrderCommand::Deliver => self.step(Shipped, "delivered", OrderEvent::OrderDelivered),
            OrderCommand::Return { reason } => {
                let reason = reason.trim().to_owned();
                if reason.len() > 1000 {
                    return Err(OrderError::InvalidInput(
                        "reason must be at most 1000 characters".into(),
                    ));
                }
                if self.returns_closed {
                    return Err(OrderError::ReturnWindowClosed);
                }
                self.step(Delivered, "returned", OrderEvent::OrderReturned { reason })
            }
            OrderCommand::CloseReturns => {
                if self.returns_closed {
                    return Err(OrderError::ReturnWindowClosed);
                }
                self.step(Delivered, "closed for returns", OrderEvent::ReturnsClosed)
            }
            OrderCommand::RecordRefund => {
                self.step(Returned, "refunded", OrderEvent::OrderRefunded)
            }
            OrderCommand::Cancel {
                reason,
                cancelled_by,
            } => {
                let reason = reason.trim().to_owned();
                if reason.is_empty() || reason.len() > 1000 {
                    return Err(OrderError::InvalidInput(
                        "reason must be 1 to 1000 characters".into(),
                    ));
                }
                match self.status {
                    None => Err(OrderError::NotPlaced),
                    Some(status) if status.cancellable() => Ok(OrderEvent::OrderCancelled {
                        reason,
                        cancelled_by,
                    }),
                    Some(status) => Err(OrderError::InvalidTransition {
                        from: status,
                        action: "cancelled",
                    }),
                }
            }
        }
    }
}

impl Aggregate for Order {
    const TYPE: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;
    type Services = ();

    async fn handle(
        &mut self,
        command: OrderCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), OrderError> {
        let event = self.decide(command)?;
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: OrderEvent) {
        use OrderStatus::*;
        self.status = Some(match event {
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
                payment_id,
                shipping_address,
            } => {
                self.buyer_id = Some(buyer_id);
                self.lines = lines;
                self.subtotal = Some(subtotal);
                self.discount = Some(discount);
                self.shipping = Some(shipping);
                self.tax = Some(tax);
                self.total = Some(total);
                self.promotion_code = promotion_code;
                self.shipping_method_id = shipping_method_id;
                self.payment_id = Some(payment_id);
                self.shipping_address = Some(shipping_address);
                Pending
            }
            OrderEvent::InventoryReserved => Reserved,
            OrderEvent::PaymentAuthorized => Authorized,
            OrderEvent::OrderConfirmed => Confirmed,
            OrderEvent::OrderShipped { .. } => Shipped,
            OrderEvent::OrderDelivered => Delivered,
            OrderEvent::ReturnsClosed => {
                self.returns_closed = true;
                Delivered
            }
            OrderEvent::OrderReturned { .. } => Returned,
            OrderEvent::OrderRefunded => Refunded,
            OrderEvent::OrderCancelled { reason, .. } => {
                self.cancellation_reason = Some(reason);
                Cancelled
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::{Currency, OrderId, ProductId, Sku};

    type OrderTest = TestFramework<Order>;

    fn eur(amount: i64) -> Money {
        Money::new(amount, Currency::parse("EUR").unwrap())
    }

    fn line(quantity: u32, price: i64) -> OrderLine {
        OrderLine {
            sku: Sku::parse("A").unwrap(),
            product_id: ProductId(uuid::Uuid::from_u128(1)),
            seller_id: AccountId(uuid::Uuid::from_u128(2)),
            quantity,
            unit_price: eur(price),
        }
    }

    /// The aggregate never opens a sealed address: any ciphertext will do.
    fn address() -> crate::privacy::Sealed {
        crate::privacy::Sealed {
            sealed_for: uuid::Uuid::from_u128(3),
            ciphertext: "c2VhbGVk".into(),
        }
    }

    fn place(lines: Vec<OrderLine>, total: Money) -> OrderCommand {
        OrderCommand::Place {
            order_id: OrderId(uuid::Uuid::from_u128(5)),
            buyer_id: AccountId(uuid::Uuid::from_u128(3)),
            lines,
            total,
            shipping_address: address(),
        }
    }

    fn placed() -> OrderEvent {
        OrderEvent::OrderPlaced {
            buyer_id: AccountId(uuid::Uuid::from_u128(3)),
            lines: vec![line(2, 500)],
            subtotal: eur(1000),
            discount: eur(0),
            shipping: eur(0),
            tax: eur(0),
            total: eur(1000),
            promotion_code: None,
            shipping_method_id: None,
            payment_id: PaymentId(uuid::Uuid::from_u128(4)),
            shipping_address: address().into(),
        }
    }

    fn confirmed() -> Vec<OrderEvent> {
        vec![
            placed(),
            OrderEvent::InventoryReserved,
            OrderEvent::PaymentAuthorized,
            OrderEvent::OrderConfirmed,
        ]
    }

    #[test]
    fn placing_an_order_starts_it_pending() {
        let events = OrderTest::with(())
            .given_no_previous_events()
            .when(place(vec![line(2, 500)], eur(1000)))
            .inspect_result()
            .unwrap();
        let [OrderEvent::OrderPlaced {
            subtotal,
            discount,
            shipping,
            tax,
            total,
            promotion_code,
            shipping_method_id,
            ..
        }] = &events[..]
        else {
            panic!("expected one OrderPlaced, got {events:?}");
        };
        // Until pricing lands: the lines' sum, nothing off, no shipping or tax.
        assert_eq!(
            (*subtotal, *discount, *shipping, *tax, *total),
            (eur(1000), eur(0), eur(0), eur(0), eur(1000))
        );
        assert_eq!((promotion_code, shipping_method_id), (&None, &None));
        let mut order = Order::default();
        order.apply(events[0].clone());
        assert_eq!(order.status, Some(OrderStatus::Pending));
    }

    #[test]
    fn an_order_is_placed_once() {
        OrderTest::with(())
            .given(vec![placed()])
            .when(place(vec![line(2, 500)], eur(1000)))
            .then_expect_error(OrderError::AlreadyPlaced);
    }

    #[test]
    fn an_order_needs_lines() {
        OrderTest::with(())
            .given_no_previous_events()
            .when(place(vec![], eur(0)))
            .then_expect_error(OrderError::NoLines);
    }

    #[test]
    fn the_total_is_the_sum_of_the_lines() {
        OrderTest::with(())
            .given_no_previous_events()
            .when(place(vec![line(2, 500)], eur(999)))
            .then_expect_error(OrderError::TotalMismatch);
    }

    #[test]
    fn the_happy_path_walks_every_step_in_order() {
        let mut given = vec![placed()];
        for (command, event) in [
            (
                OrderCommand::RecordInventoryReserved,
                OrderEvent::InventoryReserved,
            ),
            (
                OrderCommand::RecordPaymentAuthorized,
                OrderEvent::PaymentAuthorized,
            ),
            (OrderCommand::Confirm, OrderEvent::OrderConfirmed),
            (
                OrderCommand::Ship {
                    carrier: "DHL".into(),
                    tracking_number: "123".into(),
                },
                OrderEvent::OrderShipped {
                    carrier: "DHL".into(),
                    tracking_number: "123".into(),
                },
            ),
            (OrderCommand::Deliver, OrderEvent::OrderDelivered),
            (
                OrderCommand::Return {
                    reason: "too small".into(),
                },
                OrderEvent::OrderReturned {
                    reason: "too small".into(),
                },
            ),
            (OrderCommand::RecordRefund, OrderEvent::OrderRefunded),
        ] {
            OrderTest::with(())
                .given(given.clone())
                .when(command)
                .then_expect_events(vec![event.clone()]);
            given.push(event);
        }
    }

    #[test]
    fn a_step_cannot_be_skipped() {
        OrderTest::with(())
            .given(vec![placed()])
            .when(OrderCommand::Confirm)
            .then_expect_error(OrderError::InvalidTransition {
                from: OrderStatus::Pending,
                action: "confirmed",
            });
        OrderTest::with(())
            .given(vec![placed()])
            .when(OrderCommand::Ship {
                carrier: "DHL".into(),
                tracking_number: "1".into(),
            })
            .then_expect_error(OrderError::InvalidTransition {
                from: OrderStatus::Pending,
                action: "shipped",
            });
    }

    #[test]
    fn a_step_cannot_be_repeated() {
        OrderTest::with(())
            .given(vec![placed(), OrderEvent::InventoryReserved])
            .when(OrderCommand::RecordInventoryReserved)
            .then_expect_error(OrderError::InvalidTransition {
                from: OrderStatus::Reserved,
                action: "reserved",
            });
    }

    #[test]
    fn commands_on_an_unplaced_order_are_refused() {
        OrderTest::with(())
            .given_no_previous_events()
            .when(OrderCommand::Deliver)
            .then_expect_error(OrderError::NotPlaced);
    }

    #[test]
    fn cancelling_before_shipping_records_the_reason() {
        let by = Some(AccountId(uuid::Uuid::from_u128(3)));
        OrderTest::with(())
            .given(confirmed())
            .when(OrderCommand::Cancel {
                reason: "changed my mind".into(),
                cancelled_by: by,
            })
            .then_expect_events(vec![OrderEvent::OrderCancelled {
                reason: "changed my mind".into(),
                cancelled_by: by,
            }]);
    }

    #[test]
    fn a_shipped_order_cannot_be_cancelled() {
        let mut given = confirmed();
        given.push(OrderEvent::OrderShipped {
            carrier: "DHL".into(),
            tracking_number: "1".into(),
        });
        OrderTest::with(())
            .given(given)
            .when(OrderCommand::Cancel {
                reason: "late".into(),
                cancelled_by: None,
            })
            .then_expect_error(OrderError::InvalidTransition {
                from: OrderStatus::Shipped,
                action: "cancelled",
            });
    }

    #[test]
    fn a_cancelled_order_is_cancelled_once() {
        OrderTest::with(())
            .given(vec![
                placed(),
                OrderEvent::OrderCancelled {
                    reason: "x".into(),
                    cancelled_by: None,
                },
            ])
            .when(OrderCommand::Cancel {
                reason: "again".into(),
                cancelled_by: None,
            })
            .then_expect_error(OrderError::InvalidTransition {
                from: OrderStatus::Cancelled,
                action: "cancelled",
            });
    }

    #[test]
    fn only_a_delivered_order_can_be_returned() {
        OrderTest::with(())
            .given(confirmed())
            .when(OrderCommand::Return { reason: "".into() })
            .then_expect_error(OrderError::InvalidTransition {
                from: OrderStatus::Confirmed,
                action: "returned",
            });
    }

    fn delivered_order() -> Vec<OrderEvent> {
        vec![
            placed(),
            OrderEvent::InventoryReserved,
            OrderEvent::PaymentAuthorized,
            OrderEvent::OrderConfirmed,
            OrderEvent::OrderShipped {
                carrier: "DHL".into(),
                tracking_number: "123".into(),
            },
            OrderEvent::OrderDelivered,
        ]
    }

    #[test]
    fn a_delivered_order_is_not_returned_after_its_return_window_closed() {
        let mut events = delivered_order();
        events.push(OrderEvent::ReturnsClosed);
        OrderTest::with(())
            .given(events.clone())
            .when(OrderCommand::Return {
                reason: "too late".into(),
            })
            .then_expect_error(OrderError::ReturnWindowClosed);
        OrderTest::with(())
            .given(delivered_order())
            .when(OrderCommand::CloseReturns)
            .then_expect_events(vec![OrderEvent::ReturnsClosed]);
    }
}

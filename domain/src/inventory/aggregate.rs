use std::collections::{BTreeMap, BTreeSet};

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{InventoryCommand, InventoryError, InventoryEvent, MAX_ON_HAND};
use crate::OrderId;

/// How many units there are and how many are held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StockLevels {
    pub on_hand: i64,
    pub reserved: i64,
}

impl StockLevels {
    pub fn available(self) -> i64 {
        self.on_hand - self.reserved
    }
}

/// One SKU's stock and the orders holding part of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    pub levels: StockLevels,
    /// Units held per order, until committed or released.
    pub reservations: BTreeMap<OrderId, i64>,
    /// Units sold per confirmed order, until the sale is final (delivered and past its return
    /// window, when it is settled); a cancellation or a return restores them. So the state holds
    /// only the orders still in flight, however many a SKU has sold.
    pub committed: BTreeMap<OrderId, i64>,
    /// Orders whose hold was given back: a reservation for one of them again is refused (a
    /// stalled saga worker waking up late must not hold stock for a cancelled order). Only the
    /// latest [`REMEMBERED_RELEASES`] are kept; order ids grow with time (UUID v7), so every
    /// order at or before `released_before` counts as released.
    #[serde(default)]
    pub released: BTreeSet<OrderId>,
    #[serde(default)]
    pub released_before: Option<OrderId>,
}

/// How many released orders a SKU remembers one by one.
pub const REMEMBERED_RELEASES: usize = 1024;

impl Inventory {
    fn with_on_hand(&self, on_hand: i64) -> Result<StockLevels, InventoryError> {
        if on_hand > MAX_ON_HAND {
            return Err(InventoryError::TooMuchStock);
        }
        if on_hand < self.levels.reserved {
            return Err(InventoryError::BelowReserved {
                on_hand,
                reserved: self.levels.reserved,
            });
        }
        Ok(StockLevels {
            on_hand,
            ..self.levels
        })
    }

    fn decide(&self, command: InventoryCommand) -> Result<Option<InventoryEvent>, InventoryError> {
        let levels = self.levels;
        Ok(Some(match command {
            InventoryCommand::Restock { quantity } => {
                if quantity <= 0 {
                    return Err(InventoryError::NonPositiveQuantity);
                }
                let on_hand = levels
                    .on_hand
                    .checked_add(quantity)
                    .ok_or(InventoryError::TooMuchStock)?;
                InventoryEvent::Restocked {
                    quantity,
                    levels: self.with_on_hand(on_hand)?,
                }
            }
            InventoryCommand::Adjust { delta, reason } => {
                if delta == 0 {
                    return Err(InventoryError::ZeroDelta);
                }
                let reason = reason.trim().to_owned();
                if reason.is_empty() || reason.chars().count() > 500 {
                    return Err(InventoryError::MissingReason);
                }
                let on_hand = levels
                    .on_hand
                    .checked_add(delta)
                    .ok_or(InventoryError::TooMuchStock)?;
                InventoryEvent::Adjusted {
                    delta,
                    reason,
                    levels: self.with_on_hand(on_hand)?,
                }
            }
            InventoryCommand::Reserve { order_id, quantity } => {
                if quantity <= 0 {
                    return Err(InventoryError::NonPositiveQuantity);
                }
                if self.reservations.contains_key(&order_id)
                    || self.committed.contains_key(&order_id)
                {
                    return Ok(None);
                }
                if self.released.contains(&order_id)
                    || self
                        .released_before
                        .is_some_and(|horizon| order_id <= horizon)
                {
                    return Err(InventoryError::AlreadyReleased);
                }
                if quantity > levels.available() {
                    return Err(InventoryError::OutOfStock {
                        requested: quantity,
                        available: levels.available(),
                    });
                }
                let levels = StockLevels {
                    reserved: levels.reserved + quantity,
                    ..levels
                };
                InventoryEvent::Reserved {
                    order_id,
                    quantity,
                    levels,
                }
            }
            InventoryCommand::Release { order_id } => {
                let Some(&quantity) = self.reservations.get(&order_id) else {
                    return Ok(None);
                };
                let levels = StockLevels {
                    reserved: levels.reserved - quantity,
                    ..levels
                };
                InventoryEvent::Released {
                    order_id,
                    quantity,
                    levels,
                }
            }
            InventoryCommand::Commit { order_id } => {
                let Some(&quantity) = self.reservations.get(&order_id) else {
                    // Committing twice is a retry; committing what was never held is a bug upstream.
                    return if self.committed.contains_key(&order_id) {
                        Ok(None)
                    } else {
                        Err(InventoryError::NothingCommitted)
                    };
                };
                let levels = StockLevels {
                    on_hand: levels.on_hand - quantity,
                    reserved: levels.reserved - quantity,
                };
                InventoryEvent::Committed {
                    order_id,
                    quantity,
                    levels,
                }
            }
            InventoryCommand::Restore { order_id } => {
                let Some(&quantity) = self.committed.get(&order_id) else {
                    return Ok(None);
                };
                let levels = StockLevels {
                    on_hand: levels.on_hand + quantity,
                    ..levels
                };
                InventoryEvent::Restored {
                    order_id,
                    quantity,
                    levels,
                }
            }
            InventoryCommand::Settle { order_id } => {
                let Some(&quantity) = self.committed.get(&order_id) else {
                    return Ok(None);
                };
                InventoryEvent::Settled {
                    order_id,
                    quantity,
                    levels,
                }
            }
        }))
    }
}

impl Aggregate for Inventory {
    const TYPE: &'static str = "inventory";
    type Command = InventoryCommand;
    type Event = InventoryEvent;
    type Error = InventoryError;
    type Services = ();

    async fn handle(
        &mut self,
        command: InventoryCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), InventoryError> {
        if let Some(event) = self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: InventoryEvent) {
        match event {
            InventoryEvent::Restocked { levels, .. } | InventoryEvent::Adjusted { levels, .. } => {
                self.levels = levels
            }
            InventoryEvent::Reserved {
                order_id,
                quantity,
                levels,
            } => {
                self.reservations.insert(order_id, quantity);
                self.levels = levels;
            }
            InventoryEvent::Released {
                order_id, levels, ..
            } => {
                self.reservations.remove(&order_id);
                self.released.insert(order_id);
                while self.released.len() > REMEMBERED_RELEASES {
                    // An old order released late must not move the horizon back.
                    self.released_before = self.released.pop_first().max(self.released_before);
                }
                self.levels = levels;
            }
            InventoryEvent::Committed {
                order_id,
                quantity,
                levels,
            } => {
                self.reservations.remove(&order_id);
                self.committed.insert(order_id, quantity);
                self.levels = levels;
            }
            InventoryEvent::Restored {
                order_id, levels, ..
            }
            | InventoryEvent::Settled {
                order_id, levels, ..
            } => {
                self.committed.remove(&order_id);
                self.levels = levels;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    type InventoryTest = TestFramework<Inventory>;

    fn levels(on_hand: i64, reserved: i64) -> StockLevels {
        StockLevels { on_hand, reserved }
    }

    fn order(n: u128) -> OrderId {
        OrderId(uuid::Uuid::from_u128(n))
    }

    fn stocked(n: i64) -> InventoryEvent {
        InventoryEvent::Restocked {
            quantity: n,
            levels: levels(n, 0),
        }
    }

    fn reserved(n: u128, quantity: i64, on_hand: i64, held: i64) -> InventoryEvent {
        InventoryEvent::Reserved {
            order_id: order(n),
            quantity,
            levels: levels(on_hand, held),
        }
    }

    fn released(n: u128, quantity: i64, on_hand: i64, held: i64) -> InventoryEvent {
        InventoryEvent::Released {
            order_id: order(n),
            quantity,
            levels: levels(on_hand, held),
        }
    }

    #[test]
    fn an_order_whose_hold_was_released_is_not_reserved_again() {
        InventoryTest::with(())
            .given(vec![stocked(5), reserved(1, 3, 5, 3), released(1, 3, 5, 0)])
            .when(InventoryCommand::Reserve {
                order_id: order(1),
                quantity: 3,
            })
            .then_expect_error(InventoryError::AlreadyReleased);
    }

    #[test]
    fn forgotten_releases_still_refuse_older_orders() {
        let mut given = vec![stocked(5)];
        for n in 1..=(REMEMBERED_RELEASES as u128 + 2) {
            given.push(reserved(n, 1, 5, 1));
            given.push(released(n, 1, 5, 0));
        }
        let mut inventory = Inventory::default();
        for event in given.clone() {
            inventory.apply(event);
        }
        assert_eq!(inventory.released.len(), REMEMBERED_RELEASES);
        InventoryTest::with(())
            .given(given.clone())
            .when(InventoryCommand::Reserve {
                order_id: order(1),
                quantity: 1,
            })
            .then_expect_error(InventoryError::AlreadyReleased);
        InventoryTest::with(())
            .given(given)
            .when(InventoryCommand::Reserve {
                order_id: order(REMEMBERED_RELEASES as u128 + 3),
                quantity: 1,
            })
            .then_expect_events(vec![reserved(REMEMBERED_RELEASES as u128 + 3, 1, 5, 1)]);
    }

    #[test]
    fn a_settled_order_is_forgotten_and_the_levels_stay() {
        let committed = InventoryEvent::Committed {
            order_id: order(1),
            quantity: 2,
            levels: levels(3, 0),
        };
        let settled = InventoryEvent::Settled {
            order_id: order(1),
            quantity: 2,
            levels: levels(3, 0),
        };
        InventoryTest::with(())
            .given(vec![stocked(5), reserved(1, 2, 5, 2), committed.clone()])
            .when(InventoryCommand::Settle { order_id: order(1) })
            .then_expect_events(vec![settled.clone()]);
        let mut inventory = Inventory::default();
        for event in [stocked(5), reserved(1, 2, 5, 2), committed, settled.clone()] {
            inventory.apply(event);
        }
        assert!(inventory.committed.is_empty());
        InventoryTest::with(())
            .given(vec![stocked(5), reserved(1, 2, 5, 2), settled])
            .when(InventoryCommand::Settle { order_id: order(1) })
            .then_expect_events(vec![]);
    }

    #[test]
    fn restocking_adds_to_on_hand() {
        InventoryTest::with(())
            .given(vec![stocked(5)])
            .when(InventoryCommand::Restock { quantity: 3 })
            .then_expect_events(vec![InventoryEvent::Restocked {
                quantity: 3,
                levels: levels(8, 0),
            }]);
    }

    #[test]
    fn a_restock_needs_a_positive_quantity() {
        InventoryTest::with(())
            .given_no_previous_events()
            .when(InventoryCommand::Restock { quantity: 0 })
            .then_expect_error(InventoryError::NonPositiveQuantity);
        InventoryTest::with(())
            .given_no_previous_events()
            .when(InventoryCommand::Restock { quantity: -4 })
            .then_expect_error(InventoryError::NonPositiveQuantity);
    }

    #[test]
    fn an_adjustment_never_takes_on_hand_below_reserved() {
        InventoryTest::with(())
            .given(vec![
                stocked(5),
                InventoryEvent::Reserved {
                    order_id: order(1),
                    quantity: 3,
                    levels: levels(5, 3),
                },
            ])
            .when(InventoryCommand::Adjust {
                delta: -3,
                reason: "damaged".into(),
            })
            .then_expect_error(InventoryError::BelowReserved {
                on_hand: 2,
                reserved: 3,
            });
    }

    #[test]
    fn an_adjustment_needs_a_reason_and_a_delta() {
        InventoryTest::with(())
            .given(vec![stocked(5)])
            .when(InventoryCommand::Adjust {
                delta: -1,
                reason: " ".into(),
            })
            .then_expect_error(InventoryError::MissingReason);
        InventoryTest::with(())
            .given(vec![stocked(5)])
            .when(InventoryCommand::Adjust {
                delta: 0,
                reason: "x".into(),
            })
            .then_expect_error(InventoryError::ZeroDelta);
    }

    #[test]
    fn a_reservation_holds_units() {
        InventoryTest::with(())
            .given(vec![stocked(5)])
            .when(InventoryCommand::Reserve {
                order_id: order(1),
                quantity: 2,
            })
            .then_expect_events(vec![InventoryEvent::Reserved {
                order_id: order(1),
                quantity: 2,
                levels: levels(5, 2),
            }]);
    }

    #[test]
    fn available_never_goes_negative() {
        InventoryTest::with(())
            .given(vec![
                stocked(1),
                InventoryEvent::Reserved {
                    order_id: order(1),
                    quantity: 1,
                    levels: levels(1, 1),
                },
            ])
            .when(InventoryCommand::Reserve {
                order_id: order(2),
                quantity: 1,
            })
            .then_expect_error(InventoryError::OutOfStock {
                requested: 1,
                available: 0,
            });
    }

    #[test]
    fn one_reservation_per_order_retries_are_no_ops() {
        InventoryTest::with(())
            .given(vec![
                stocked(5),
                InventoryEvent::Reserved {
                    order_id: order(1),
                    quantity: 2,
                    levels: levels(5, 2),
                },
            ])
            .when(InventoryCommand::Reserve {
                order_id: order(1),
                quantity: 2,
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn releasing_gives_held_units_back_once() {
        let given = vec![
            stocked(5),
            InventoryEvent::Reserved {
                order_id: order(1),
                quantity: 2,
                levels: levels(5, 2),
            },
        ];
        InventoryTest::with(())
            .given(given.clone())
            .when(InventoryCommand::Release { order_id: order(1) })
            .then_expect_events(vec![InventoryEvent::Released {
                order_id: order(1),
                quantity: 2,
                levels: levels(5, 0),
            }]);
        let mut released = given;
        released.push(InventoryEvent::Released {
            order_id: order(1),
            quantity: 2,
            levels: levels(5, 0),
        });
        InventoryTest::with(())
            .given(released)
            .when(InventoryCommand::Release { order_id: order(1) })
            .then_expect_events(vec![]);
    }

    #[test]
    fn committing_takes_units_out_of_reserved_and_on_hand() {
        InventoryTest::with(())
            .given(vec![
                stocked(5),
                InventoryEvent::Reserved {
                    order_id: order(1),
                    quantity: 2,
                    levels: levels(5, 2),
                },
            ])
            .when(InventoryCommand::Commit { order_id: order(1) })
            .then_expect_events(vec![InventoryEvent::Committed {
                order_id: order(1),
                quantity: 2,
                levels: levels(3, 0),
            }]);
    }

    #[test]
    fn committing_what_was_never_held_is_refused() {
        InventoryTest::with(())
            .given(vec![stocked(5)])
            .when(InventoryCommand::Commit { order_id: order(1) })
            .then_expect_error(InventoryError::NothingCommitted);
    }

    #[test]
    fn restoring_a_cancelled_confirmed_order_puts_units_back() {
        InventoryTest::with(())
            .given(vec![
                stocked(5),
                InventoryEvent::Reserved {
                    order_id: order(1),
                    quantity: 2,
                    levels: levels(5, 2),
                },
                InventoryEvent::Committed {
                    order_id: order(1),
                    quantity: 2,
                    levels: levels(3, 0),
                },
            ])
            .when(InventoryCommand::Restore { order_id: order(1) })
            .then_expect_events(vec![InventoryEvent::Restored {
                order_id: order(1),
                quantity: 2,
                levels: levels(5, 0),
            }]);
    }
}

//! Giving a buyer back the cart of a checkout that failed or was cancelled.
//!
//! The checkout saga's compensation sends [`CartCommand::Restore`](super::CartCommand::Restore)
//! with the order's lines. The buyer may have filled a new cart meanwhile; the two are merged:
//!
//! - a SKU only in the failed order comes back with its quantity and its price at checkout
//!   (the next checkout prices it again at the catalog's price of the day);
//! - a SKU in both keeps the larger of the two quantities, not their sum: a buyer who carted the
//!   same thing again after the failure wanted it once, not twice;
//! - a SKU that cannot rejoin the cart (its price is in another currency than the lines the
//!   cart holds now, or the cart already holds [`MAX_LINES`] SKUs) goes to the wishlist, so
//!   nothing the buyer chose is lost.
//!
//! Each order is restored once: the cart remembers the orders it gave back, so a redelivered
//! compensation appends nothing and never doubles a quantity.

use super::{Cart, CartEvent, MAX_LINES, MAX_LINE_QUANTITY};
use crate::order::OrderLine;
use crate::{OrderId, Sku};

impl Cart {
    /// The event that gives back `lines` of order `order_id`, or `None` if it already was.
    pub(super) fn restore(&self, order_id: OrderId, lines: Vec<OrderLine>) -> Option<CartEvent> {
        if self.restored.contains(&order_id) {
            return None;
        }
        let mut currency = self
            .lines
            .values()
            .next()
            .map(|line| line.unit_price.currency);
        let mut count = self.lines.len();
        let mut restored = Vec::with_capacity(lines.len());
        let mut wishlisted: Vec<Sku> = Vec::new();
        for line in lines {
            if let Some(current) = self.lines.get(&line.sku) {
                restored.push(OrderLine {
                    product_id: current.product_id,
                    seller_id: current.seller_id,
                    quantity: current.quantity.max(line.quantity).min(MAX_LINE_QUANTITY),
                    unit_price: current.unit_price,
                    sku: line.sku,
                });
                continue;
            }
            let same_currency =
                *currency.get_or_insert(line.unit_price.currency) == line.unit_price.currency;
            if !same_currency || count >= MAX_LINES {
                wishlisted.push(line.sku);
                continue;
            }
            count += 1;
            restored.push(OrderLine {
                quantity: line.quantity.min(MAX_LINE_QUANTITY),
                ..line
            });
        }
        Some(CartEvent::CartRestored {
            order_id,
            lines: restored,
            wishlisted,
        })
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use cqrs_es::Aggregate;

    use super::*;
    use crate::cart::CartCommand;
    use crate::{AccountId, Currency, Money, ProductId};

    type CartTest = TestFramework<Cart>;

    fn sku(s: &str) -> Sku {
        Sku::parse(s).unwrap()
    }

    fn money(amount: i64, currency: &str) -> Money {
        Money::new(amount, Currency::parse(currency).unwrap())
    }

    fn line(s: &str, quantity: u32, price: Money) -> OrderLine {
        OrderLine {
            sku: sku(s),
            product_id: ProductId(uuid::Uuid::from_u128(1)),
            seller_id: AccountId(uuid::Uuid::from_u128(2)),
            quantity,
            unit_price: price,
        }
    }

    fn carted(l: &OrderLine) -> CartEvent {
        CartEvent::ItemQuantitySet {
            sku: l.sku.clone(),
            product_id: l.product_id,
            seller_id: l.seller_id,
            quantity: l.quantity,
            unit_price: l.unit_price,
        }
    }

    fn order() -> OrderId {
        OrderId(uuid::Uuid::from_u128(7))
    }

    fn checked_out(lines: &[OrderLine]) -> Vec<CartEvent> {
        let mut events: Vec<CartEvent> = lines.iter().map(carted).collect();
        events.push(CartEvent::CheckedOut {
            order_id: order(),
            lines: lines.to_vec(),
            total: money(1, "EUR"),
        });
        events
    }

    #[test]
    fn a_failed_checkout_gives_back_the_same_lines_and_quantities() {
        let lines = vec![
            line("A", 2, money(500, "EUR")),
            line("B", 1, money(300, "EUR")),
        ];
        let mut cart = Cart::default();
        for event in checked_out(&lines) {
            cart.apply(event);
        }
        assert!(cart.lines.is_empty());
        let event = cart.restore(order(), lines.clone()).unwrap();
        cart.apply(event);
        assert_eq!(cart.lines.len(), 2);
        assert_eq!(cart.lines[&sku("A")].quantity, 2);
        assert_eq!(cart.lines[&sku("B")].quantity, 1);
        assert_eq!(cart.total(), Some(money(1300, "EUR")));
    }

    #[test]
    fn an_order_is_restored_once() {
        let lines = vec![line("A", 2, money(500, "EUR"))];
        let mut given = checked_out(&lines);
        given.push(CartEvent::CartRestored {
            order_id: order(),
            lines: lines.clone(),
            wishlisted: vec![],
        });
        CartTest::with(())
            .given(given)
            .when(CartCommand::Restore {
                order_id: order(),
                lines,
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_sku_carted_again_meanwhile_keeps_the_larger_quantity() {
        let lines = vec![
            line("A", 2, money(500, "EUR")),
            line("B", 5, money(300, "EUR")),
        ];
        let mut given = checked_out(&lines);
        given.push(carted(&line("A", 3, money(450, "EUR"))));
        given.push(carted(&line("B", 1, money(300, "EUR"))));
        CartTest::with(())
            .given(given)
            .when(CartCommand::Restore {
                order_id: order(),
                lines,
            })
            .then_expect_events(vec![CartEvent::CartRestored {
                order_id: order(),
                lines: vec![
                    line("A", 3, money(450, "EUR")),
                    line("B", 5, money(300, "EUR")),
                ],
                wishlisted: vec![],
            }]);
    }

    #[test]
    fn a_line_in_another_currency_than_the_cart_goes_to_the_wishlist() {
        let lines = vec![line("A", 2, money(500, "USD"))];
        let mut given = checked_out(&lines);
        given.push(carted(&line("B", 1, money(300, "EUR"))));
        CartTest::with(())
            .given(given)
            .when(CartCommand::Restore {
                order_id: order(),
                lines,
            })
            .then_expect_events(vec![CartEvent::CartRestored {
                order_id: order(),
                lines: vec![],
                wishlisted: vec![sku("A")],
            }]);
    }
}

use std::collections::{BTreeMap, BTreeSet};

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{CartCommand, CartError, CartEvent, CatalogItem, MAX_LINES, MAX_LINE_QUANTITY};
use crate::{AccountId, Money, OrderId, ProductId, Sku};

/// One SKU in the cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartLine {
    pub product_id: ProductId,
    pub seller_id: AccountId,
    pub quantity: u32,
    pub unit_price: Money,
}

/// The buyer's open cart and their wishlist.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cart {
    pub lines: BTreeMap<Sku, CartLine>,
    pub wishlist: BTreeSet<Sku>,
    /// How many carts this buyer has checked out so far.
    pub checkouts: u32,
    /// The orders whose lines were given back to this cart (each is given back once).
    #[serde(default)]
    pub restored: BTreeSet<OrderId>,
}

impl Cart {
    /// The sum of the lines, or `None` for an empty cart.
    pub fn total(&self) -> Option<Money> {
        let mut lines = self.lines.values();
        let first = lines.next()?;
        lines.try_fold(first.unit_price.times(first.quantity)?, |sum, line| {
            sum.plus(line.unit_price.times(line.quantity)?)
        })
    }

    fn listed(sku: &Sku, item: Option<CatalogItem>) -> Result<CatalogItem, CartError> {
        let item = item.ok_or_else(|| CartError::UnknownSku(sku.clone()))?;
        if item.listed {
            Ok(item)
        } else {
            Err(CartError::NotListed(sku.clone()))
        }
    }

    fn set_quantity(
        &self,
        sku: Sku,
        quantity: u32,
        item: Option<CatalogItem>,
    ) -> Result<Option<CartEvent>, CartError> {
        if quantity == 0 {
            return Ok(self
                .lines
                .contains_key(&sku)
                .then_some(CartEvent::ItemRemoved { sku }));
        }
        if quantity > MAX_LINE_QUANTITY {
            return Err(CartError::QuantityTooLarge);
        }
        let item = Self::listed(&sku, item)?;
        if item.variants_only {
            return Err(CartError::VariantsOnly(sku));
        }
        if !self.lines.contains_key(&sku) && self.lines.len() >= MAX_LINES {
            return Err(CartError::TooManyLines);
        }
        let other_currency = self
            .lines
            .iter()
            .any(|(s, line)| *s != sku && line.unit_price.currency != item.unit_price.currency);
        if other_currency {
            return Err(CartError::CurrencyMismatch(sku));
        }
        let unchanged = self
            .lines
            .get(&sku)
            .is_some_and(|line| line.quantity == quantity && line.unit_price == item.unit_price);
        Ok((!unchanged).then_some(CartEvent::ItemQuantitySet {
            sku,
            product_id: item.product_id,
            seller_id: item.seller_id,
            quantity,
            unit_price: item.unit_price,
        }))
    }

    fn decide(&self, command: CartCommand) -> Result<Option<CartEvent>, CartError> {
        match command {
            CartCommand::SetQuantity {
                sku,
                quantity,
                item,
            } => self.set_quantity(sku, quantity, item),
            CartCommand::RemoveItem { sku } => {
                if !self.lines.contains_key(&sku) {
                    return Err(CartError::NotInCart(sku));
                }
                Ok(Some(CartEvent::ItemRemoved { sku }))
            }
            CartCommand::MoveToWishlist { sku } => {
                if !self.lines.contains_key(&sku) {
                    return Err(CartError::NotInCart(sku));
                }
                Ok(Some(CartEvent::ItemMovedToWishlist { sku }))
            }
            CartCommand::AddToWishlist { sku, item } => {
                Self::listed(&sku, item)?;
                Ok((!self.wishlist.contains(&sku)).then_some(CartEvent::WishlistItemAdded { sku }))
            }
            CartCommand::RemoveFromWishlist { sku } => {
                if !self.wishlist.contains(&sku) {
                    return Err(CartError::NotInWishlist(sku));
                }
                Ok(Some(CartEvent::WishlistItemRemoved { sku }))
            }
            CartCommand::Checkout { order_id, catalog } => {
                if self.lines.is_empty() {
                    return Err(CartError::EmptyCart);
                }
                let lines = CartCommand::priced_lines(
                    self.lines
                        .iter()
                        .map(|(sku, line)| (sku.clone(), line.quantity)),
                    &catalog,
                )
                .map_err(CartError::LineUnavailable)?;
                let mut total: Option<Money> = None;
                for line in &lines {
                    let amount = line
                        .unit_price
                        .times(line.quantity)
                        .ok_or(CartError::TotalOverflow)?;
                    total = Some(match total {
                        None => amount,
                        Some(sum) => sum.plus(amount).ok_or_else(|| {
                            if sum.currency == amount.currency {
                                CartError::TotalOverflow
                            } else {
                                CartError::CurrencyMismatch(line.sku.clone())
                            }
                        })?,
                    });
                }
                let total = total.ok_or(CartError::EmptyCart)?;
                Ok(Some(CartEvent::CheckedOut {
                    order_id,
                    lines,
                    total,
                }))
            }
            CartCommand::Restore { order_id, lines } => Ok(self.restore(order_id, lines)),
        }
    }
}

impl Aggregate for Cart {
    const TYPE: &'static str = "cart";
    type Command = CartCommand;
    type Event = CartEvent;
    type Error = CartError;
    type Services = ();

    async fn handle(
        &mut self,
        command: CartCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), CartError> {
        if let Some(event) = self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: CartEvent) {
        match event {
            CartEvent::ItemQuantitySet {
                sku,
                product_id,
                seller_id,
                quantity,
                unit_price,
            } => {
                self.lines.insert(
                    sku,
                    CartLine {
                        product_id,
                        seller_id,
                        quantity,
                        unit_price,
                    },
                );
            }
            CartEvent::ItemRemoved { sku } => {
                self.lines.remove(&sku);
            }
            CartEvent::ItemMovedToWishlist { sku } => {
                self.lines.remove(&sku);
                self.wishlist.insert(sku);
            }
            CartEvent::WishlistItemAdded { sku } => {
                self.wishlist.insert(sku);
            }
            CartEvent::WishlistItemRemoved { sku } => {
                self.wishlist.remove(&sku);
            }
            CartEvent::CheckedOut { .. } => {
                self.lines.clear();
                self.checkouts += 1;
            }
            CartEvent::CartRestored {
                order_id,
                lines,
                wishlisted,
            } => {
                for line in lines {
                    self.lines.insert(
                        line.sku,
                        CartLine {
                            product_id: line.product_id,
                            seller_id: line.seller_id,
                            quantity: line.quantity,
                            unit_price: line.unit_price,
                        },
                    );
                }
                self.wishlist.extend(wishlisted);
                self.restored.insert(order_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::order::OrderLine;
    use crate::Currency;

    type CartTest = TestFramework<Cart>;

    fn sku(s: &str) -> Sku {
        Sku::parse(s).unwrap()
    }

    fn eur(amount: i64) -> Money {
        Money::new(amount, Currency::parse("EUR").unwrap())
    }

    fn item(s: &str, price: Money) -> CatalogItem {
        CatalogItem {
            sku: sku(s),
            product_id: ProductId(uuid::Uuid::from_u128(1)),
            seller_id: AccountId(uuid::Uuid::from_u128(2)),
            unit_price: price,
            listed: true,
            variants_only: false,
        }
    }

    fn line_set(s: &str, quantity: u32, price: Money) -> CartEvent {
        let item = item(s, price);
        CartEvent::ItemQuantitySet {
            sku: item.sku,
            product_id: item.product_id,
            seller_id: item.seller_id,
            quantity,
            unit_price: price,
        }
    }

    #[test]
    fn setting_a_quantity_adds_a_priced_line() {
        CartTest::with(())
            .given_no_previous_events()
            .when(CartCommand::SetQuantity {
                sku: sku("A"),
                quantity: 2,
                item: Some(item("A", eur(500))),
            })
            .then_expect_events(vec![line_set("A", 2, eur(500))]);
    }

    #[test]
    fn quantity_zero_removes_the_line() {
        CartTest::with(())
            .given(vec![line_set("A", 2, eur(500))])
            .when(CartCommand::SetQuantity {
                sku: sku("A"),
                quantity: 0,
                item: None,
            })
            .then_expect_events(vec![CartEvent::ItemRemoved { sku: sku("A") }]);
    }

    #[test]
    fn setting_the_same_quantity_again_appends_nothing() {
        CartTest::with(())
            .given(vec![line_set("A", 2, eur(500))])
            .when(CartCommand::SetQuantity {
                sku: sku("A"),
                quantity: 2,
                item: Some(item("A", eur(500))),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_unknown_sku_cannot_be_added() {
        CartTest::with(())
            .given_no_previous_events()
            .when(CartCommand::SetQuantity {
                sku: sku("X"),
                quantity: 1,
                item: None,
            })
            .then_expect_error(CartError::UnknownSku(sku("X")));
    }

    #[test]
    fn a_delisted_item_cannot_be_added() {
        let mut delisted = item("A", eur(500));
        delisted.listed = false;
        CartTest::with(())
            .given_no_previous_events()
            .when(CartCommand::SetQuantity {
                sku: sku("A"),
                quantity: 1,
                item: Some(delisted),
            })
            .then_expect_error(CartError::NotListed(sku("A")));
    }

    #[test]
    fn a_parent_sku_without_stock_of_its_own_is_bought_through_its_variants() {
        let mut parent = item("A", eur(500));
        parent.variants_only = true;
        CartTest::with(())
            .given_no_previous_events()
            .when(CartCommand::SetQuantity {
                sku: sku("A"),
                quantity: 1,
                item: Some(parent),
            })
            .then_expect_error(CartError::VariantsOnly(sku("A")));
    }

    #[test]
    fn a_line_holds_at_most_the_maximum_quantity() {
        CartTest::with(())
            .given_no_previous_events()
            .when(CartCommand::SetQuantity {
                sku: sku("A"),
                quantity: MAX_LINE_QUANTITY + 1,
                item: Some(item("A", eur(500))),
            })
            .then_expect_error(CartError::QuantityTooLarge);
    }

    #[test]
    fn a_cart_holds_one_currency() {
        let usd = Money::new(500, Currency::parse("USD").unwrap());
        CartTest::with(())
            .given(vec![line_set("A", 1, eur(500))])
            .when(CartCommand::SetQuantity {
                sku: sku("B"),
                quantity: 1,
                item: Some(item("B", usd)),
            })
            .then_expect_error(CartError::CurrencyMismatch(sku("B")));
    }

    #[test]
    fn removing_a_line_not_in_the_cart_is_refused() {
        CartTest::with(())
            .given_no_previous_events()
            .when(CartCommand::RemoveItem { sku: sku("A") })
            .then_expect_error(CartError::NotInCart(sku("A")));
    }

    #[test]
    fn moving_a_line_to_the_wishlist_takes_it_out_of_the_cart() {
        let mut cart = Cart::default();
        cart.apply(line_set("A", 1, eur(500)));
        cart.apply(CartEvent::ItemMovedToWishlist { sku: sku("A") });
        assert!(cart.lines.is_empty());
        assert!(cart.wishlist.contains(&sku("A")));
        CartTest::with(())
            .given(vec![line_set("A", 1, eur(500))])
            .when(CartCommand::MoveToWishlist { sku: sku("A") })
            .then_expect_events(vec![CartEvent::ItemMovedToWishlist { sku: sku("A") }]);
    }

    #[test]
    fn a_wishlisted_sku_is_added_once() {
        CartTest::with(())
            .given(vec![CartEvent::WishlistItemAdded { sku: sku("A") }])
            .when(CartCommand::AddToWishlist {
                sku: sku("A"),
                item: Some(item("A", eur(1))),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn removing_from_the_wishlist_needs_the_sku_there() {
        CartTest::with(())
            .given_no_previous_events()
            .when(CartCommand::RemoveFromWishlist { sku: sku("A") })
            .then_expect_error(CartError::NotInWishlist(sku("A")));
    }

    #[test]
    fn an_empty_cart_cannot_check_out() {
        CartTest::with(())
            .given_no_previous_events()
            .when(CartCommand::Checkout {
                order_id: OrderId::new(),
                catalog: vec![],
            })
            .then_expect_error(CartError::EmptyCart);
    }

    #[test]
    fn checkout_prices_lines_at_the_current_catalog_price() {
        let order_id = OrderId(uuid::Uuid::from_u128(9));
        let current = item("A", eur(450));
        CartTest::with(())
            .given(vec![line_set("A", 2, eur(500))])
            .when(CartCommand::Checkout {
                order_id,
                catalog: vec![(sku("A"), Some(current.clone()))],
            })
            .then_expect_events(vec![CartEvent::CheckedOut {
                order_id,
                lines: vec![OrderLine {
                    sku: sku("A"),
                    product_id: current.product_id,
                    seller_id: current.seller_id,
                    quantity: 2,
                    unit_price: eur(450),
                }],
                total: eur(900),
            }]);
    }

    #[test]
    fn checkout_refuses_a_line_no_longer_for_sale() {
        CartTest::with(())
            .given(vec![line_set("A", 2, eur(500))])
            .when(CartCommand::Checkout {
                order_id: OrderId::new(),
                catalog: vec![(sku("A"), None)],
            })
            .then_expect_error(CartError::LineUnavailable(sku("A")));
    }

    #[test]
    fn the_cart_closes_exactly_once_at_checkout() {
        let checked_out = CartEvent::CheckedOut {
            order_id: OrderId::new(),
            lines: vec![],
            total: eur(500),
        };
        CartTest::with(())
            .given(vec![line_set("A", 1, eur(500)), checked_out])
            .when(CartCommand::Checkout {
                order_id: OrderId::new(),
                catalog: vec![(sku("A"), Some(item("A", eur(500))))],
            })
            .then_expect_error(CartError::EmptyCart);
    }
}

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{ProductCommand, ProductDraft, ProductError, ProductEvent};
use crate::values::Violations;
use crate::{AccountId, Money, Sku};

/// A product, its owner and whether it is on sale.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub seller_id: Option<AccountId>,
    pub details: Option<ProductDraft>,
    pub listed: bool,
}

impl Product {
    /// The price of one of the product's SKUs, or `None` if it sells no such SKU.
    pub fn price_of(&self, sku: &Sku) -> Option<Money> {
        let details = self.details.as_ref()?;
        if details.sku == *sku {
            return Some(details.price);
        }
        let variant = details.variants.iter().find(|v| v.sku == *sku)?;
        Some(variant.price.unwrap_or(details.price))
    }

    /// The product exists and `by` is its seller.
    fn owner_is(&self, by: AccountId) -> Result<(), ProductError> {
        match self.seller_id {
            None => Err(ProductError::NotFound),
            Some(owner) if owner != by => Err(ProductError::NotOwner),
            Some(_) => Ok(()),
        }
    }

    fn decide(&self, command: ProductCommand) -> Result<Vec<ProductEvent>, ProductError> {
        match command {
            ProductCommand::Create { seller_id, draft } => {
                if self.seller_id.is_some() {
                    return Err(ProductError::AlreadyCreated);
                }
                Ok(vec![ProductEvent::ProductCreated {
                    seller_id,
                    product: draft.validated()?,
                }])
            }
            ProductCommand::Update {
                by,
                changes,
                listed,
            } => {
                self.owner_is(by)?;
                let changes = changes.validated()?;
                if changes.is_empty() && listed.is_none() {
                    return Err(ProductError::NoChanges);
                }
                let currency = self.details.as_ref().map(|d| d.price.currency);
                if let Some(price) = changes.price.filter(|p| Some(p.currency) != currency) {
                    let mut violations = Violations::default();
                    violations.add(
                        &["price", "currency"],
                        format!(
                            "the price keeps the product's currency{}, not {}",
                            currency.map(|c| format!(" ({c})")).unwrap_or_default(),
                            price.currency
                        ),
                    );
                    return Err(ProductError::Invalid(violations));
                }
                let relist = listed == Some(true) && !self.listed;
                let delist = listed == Some(false) && self.listed;
                // A delisted product's fields change only as it is put back on sale.
                if !self.listed && !relist && !changes.is_empty() {
                    return Err(ProductError::Delisted);
                }
                // Asking for the listing it has already changes nothing.
                let mut events = Vec::new();
                if relist {
                    events.push(ProductEvent::ProductRelisted);
                }
                if !changes.is_empty() {
                    events.push(ProductEvent::ProductUpdated { changes });
                }
                if delist {
                    events.push(ProductEvent::ProductDelisted);
                }
                Ok(events)
            }
            ProductCommand::Delist { by } => {
                self.owner_is(by)?;
                if !self.listed {
                    return Err(ProductError::Delisted);
                }
                Ok(vec![ProductEvent::ProductDelisted])
            }
        }
    }
}

impl Aggregate for Product {
    const TYPE: &'static str = "product";
    type Command = ProductCommand;
    type Event = ProductEvent;
    type Error = ProductError;
    type Services = ();

    async fn handle(
        &mut self,
        command: ProductCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), ProductError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: ProductEvent) {
        match event {
            ProductEvent::ProductCreated { seller_id, product } => {
                self.seller_id = Some(seller_id);
                self.details = Some(product);
                self.listed = true;
            }
            ProductEvent::ProductUpdated { changes } => {
                if let Some(details) = self.details.as_mut() {
                    if let Some(name) = changes.name {
                        details.name = name;
                    }
                    if let Some(description) = changes.description {
                        details.description = description;
                    }
                    if let Some(price) = changes.price {
                        details.price = price;
                    }
                    if let Some(category) = changes.category {
                        details.category = category;
                    }
                    if let Some(attributes) = changes.attributes {
                        details.attributes = attributes;
                    }
                }
            }
            ProductEvent::ProductDelisted => self.listed = false,
            ProductEvent::ProductRelisted => self.listed = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use serde_json::json;

    use super::*;
    use crate::product::{ProductChanges, Variant};
    use crate::Currency;

    type ProductTest = TestFramework<Product>;

    fn seller() -> AccountId {
        AccountId(uuid::Uuid::from_u128(7))
    }

    fn eur(amount: i64) -> Money {
        Money::new(amount, Currency::parse("EUR").unwrap())
    }

    fn draft() -> ProductDraft {
        ProductDraft {
            sku: Sku::parse("TEE").unwrap(),
            name: "Tee".into(),
            description: "Soft cotton".into(),
            price: eur(1999),
            category: "Apparel/Shirts".into(),
            attributes: json!({"material": "cotton"}).as_object().cloned().unwrap(),
            variants: vec![Variant {
                sku: Sku::parse("TEE-M").unwrap(),
                price: Some(eur(2099)),
                attributes: json!({"size": "M"}).as_object().cloned().unwrap(),
            }],
        }
    }

    fn created() -> ProductEvent {
        ProductEvent::ProductCreated {
            seller_id: seller(),
            product: draft().validated().unwrap(),
        }
    }

    #[test]
    fn creating_normalises_the_category() {
        let events = ProductTest::with(())
            .given_no_previous_events()
            .when(ProductCommand::Create {
                seller_id: seller(),
                draft: draft(),
            })
            .inspect_result()
            .unwrap();
        let [ProductEvent::ProductCreated { product, .. }] = &events[..] else {
            panic!("{events:?}")
        };
        assert_eq!(product.category, "apparel/shirts");
    }

    #[test]
    fn a_product_is_created_once() {
        ProductTest::with(())
            .given(vec![created()])
            .when(ProductCommand::Create {
                seller_id: seller(),
                draft: draft(),
            })
            .then_expect_error(ProductError::AlreadyCreated);
    }

    #[test]
    fn a_variant_cannot_reuse_a_sku() {
        let mut d = draft();
        d.variants.push(Variant {
            sku: Sku::parse("TEE").unwrap(),
            price: None,
            attributes: Default::default(),
        });
        let result = ProductTest::with(())
            .given_no_previous_events()
            .when(ProductCommand::Create {
                seller_id: seller(),
                draft: d,
            })
            .inspect_result();
        let Err(ProductError::Invalid(violations)) = result else {
            panic!("{result:?}")
        };
        let found: Vec<_> = violations.iter().map(|v| v.path.join("/")).collect();
        assert_eq!(found, ["variants/1/sku"]);
    }

    #[test]
    fn every_field_that_breaks_a_rule_is_reported_at_once() {
        let mut d = draft();
        d.name = " ".into();
        d.category = "a//b".into();
        d.price = eur(-5);
        d.attributes = json!({"bad key": 1, "colour": ["red"]})
            .as_object()
            .cloned()
            .unwrap();
        d.variants[0].price = Some(Money::new(100, Currency::parse("USD").unwrap()));
        let result = ProductTest::with(())
            .given_no_previous_events()
            .when(ProductCommand::Create {
                seller_id: seller(),
                draft: d,
            })
            .inspect_result();
        let Err(ProductError::Invalid(violations)) = result else {
            panic!("{result:?}")
        };
        let mut found: Vec<_> = violations.iter().map(|v| v.path.join("/")).collect();
        found.sort();
        assert_eq!(
            found,
            [
                "attributes/bad key",
                "attributes/colour",
                "category",
                "name",
                "price/amount"
            ]
        );
    }

    #[test]
    fn a_negative_price_is_refused() {
        let mut d = draft();
        d.price = eur(-1);
        let result = ProductTest::with(())
            .given_no_previous_events()
            .when(ProductCommand::Create {
                seller_id: seller(),
                draft: d,
            })
            .inspect_result();
        assert!(matches!(result, Err(ProductError::Invalid(_))));
    }

    #[test]
    fn attributes_hold_scalars_only() {
        let mut d = draft();
        d.attributes = json!({"nested": {"a": 1}}).as_object().cloned().unwrap();
        let result = ProductTest::with(())
            .given_no_previous_events()
            .when(ProductCommand::Create {
                seller_id: seller(),
                draft: d,
            })
            .inspect_result();
        assert!(matches!(result, Err(ProductError::Invalid(_))));
    }

    #[test]
    fn only_the_owner_changes_a_product() {
        let changes = ProductChanges {
            name: Some("New".into()),
            ..Default::default()
        };
        ProductTest::with(())
            .given(vec![created()])
            .when(ProductCommand::Update {
                by: AccountId(uuid::Uuid::from_u128(8)),
                changes,
                listed: None,
            })
            .then_expect_error(ProductError::NotOwner);
    }

    #[test]
    fn the_owner_changes_fields() {
        let changes = ProductChanges {
            price: Some(eur(1500)),
            ..Default::default()
        };
        ProductTest::with(())
            .given(vec![created()])
            .when(ProductCommand::Update {
                by: seller(),
                changes: changes.clone(),
                listed: None,
            })
            .then_expect_events(vec![ProductEvent::ProductUpdated { changes }]);
    }

    #[test]
    fn a_change_keeps_the_currency() {
        let changes = ProductChanges {
            price: Some(Money::new(1, Currency::parse("USD").unwrap())),
            ..Default::default()
        };
        let result = ProductTest::with(())
            .given(vec![created()])
            .when(ProductCommand::Update {
                by: seller(),
                changes,
                listed: None,
            })
            .inspect_result();
        assert!(matches!(result, Err(ProductError::Invalid(_))));
    }

    #[test]
    fn an_empty_change_is_refused() {
        ProductTest::with(())
            .given(vec![created()])
            .when(ProductCommand::Update {
                by: seller(),
                changes: ProductChanges::default(),
                listed: None,
            })
            .then_expect_error(ProductError::NoChanges);
    }

    #[test]
    fn delisting_is_for_the_owner_and_happens_once() {
        ProductTest::with(())
            .given(vec![created()])
            .when(ProductCommand::Delist { by: seller() })
            .then_expect_events(vec![ProductEvent::ProductDelisted]);
        ProductTest::with(())
            .given(vec![created(), ProductEvent::ProductDelisted])
            .when(ProductCommand::Delist { by: seller() })
            .then_expect_error(ProductError::Delisted);
    }

    fn listing(listed: bool, changes: ProductChanges) -> ProductCommand {
        ProductCommand::Update {
            by: seller(),
            changes,
            listed: Some(listed),
        }
    }

    fn renamed() -> ProductChanges {
        ProductChanges {
            name: Some("Tee II".into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_owner_relists_a_delisted_product() {
        ProductTest::with(())
            .given(vec![created(), ProductEvent::ProductDelisted])
            .when(listing(true, ProductChanges::default()))
            .then_expect_events(vec![ProductEvent::ProductRelisted]);
        ProductTest::with(())
            .given(vec![created(), ProductEvent::ProductDelisted])
            .when(ProductCommand::Update {
                by: AccountId(uuid::Uuid::from_u128(8)),
                changes: ProductChanges::default(),
                listed: Some(true),
            })
            .then_expect_error(ProductError::NotOwner);
    }

    #[test]
    fn a_delisted_products_fields_change_only_as_it_is_relisted() {
        ProductTest::with(())
            .given(vec![created(), ProductEvent::ProductDelisted])
            .when(ProductCommand::Update {
                by: seller(),
                changes: renamed(),
                listed: None,
            })
            .then_expect_error(ProductError::Delisted);
        ProductTest::with(())
            .given(vec![created(), ProductEvent::ProductDelisted])
            .when(listing(true, renamed()))
            .then_expect_events(vec![
                ProductEvent::ProductRelisted,
                ProductEvent::ProductUpdated { changes: renamed() },
            ]);
    }

    #[test]
    fn asking_for_the_listing_a_product_has_changes_nothing() {
        ProductTest::with(())
            .given(vec![created()])
            .when(listing(true, ProductChanges::default()))
            .then_expect_events(vec![]);
        ProductTest::with(())
            .given(vec![created(), ProductEvent::ProductDelisted])
            .when(listing(false, ProductChanges::default()))
            .then_expect_events(vec![]);
    }

    #[test]
    fn listed_false_delists_after_the_changes() {
        ProductTest::with(())
            .given(vec![created()])
            .when(listing(false, renamed()))
            .then_expect_events(vec![
                ProductEvent::ProductUpdated { changes: renamed() },
                ProductEvent::ProductDelisted,
            ]);
    }

    #[test]
    fn a_relisted_product_is_on_sale_again() {
        let mut product = Product::default();
        for event in [
            created(),
            ProductEvent::ProductDelisted,
            ProductEvent::ProductRelisted,
        ] {
            product.apply(event);
        }
        assert!(product.listed);
    }

    #[test]
    fn a_variant_without_a_price_sells_at_the_product_price() {
        let mut product = Product::default();
        let mut d = draft();
        d.variants[0].price = None;
        product.apply(ProductEvent::ProductCreated {
            seller_id: seller(),
            product: d,
        });
        assert_eq!(
            product.price_of(&Sku::parse("TEE-M").unwrap()),
            Some(eur(1999))
        );
        assert_eq!(product.price_of(&Sku::parse("NOPE").unwrap()), None);
    }
}

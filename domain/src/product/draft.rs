use serde::Serialize;
use utoipa::ToSchema;

use super::ProductError;
use crate::values::{Validate, Violations};
use crate::{InvalidValue, Money, Sku};

/// Free-form attributes (size, colour, flavour…): names to strings, numbers or booleans.
pub type Attributes = serde_json::Map<String, serde_json::Value>;

/// A variant of a product, sold under its own SKU.
#[derive(Debug, Clone, PartialEq, Serialize, eserde::Deserialize, ToSchema)]
pub struct Variant {
    pub sku: Sku,
    /// The variant's own price; the product's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Money>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: Attributes,
}

/// Everything a seller gives to create a product.
#[derive(Debug, Clone, PartialEq, Serialize, eserde::Deserialize, ToSchema)]
pub struct ProductDraft {
    pub sku: Sku,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub price: Money,
    pub category: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: Attributes,
    #[serde(default)]
    pub variants: Vec<Variant>,
}

/// The fields a seller changes; absent ones stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, eserde::Deserialize, ToSchema)]
pub struct ProductChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Attributes>,
}

const MAX_ATTRIBUTES: usize = 50;
const MAX_VARIANTS: usize = 100;

pub(crate) fn name(value: &str) -> Result<String, InvalidValue> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > 200 || value.chars().any(char::is_control) {
        return Err(InvalidValue(
            "name must be 1 to 200 printable characters".into(),
        ));
    }
    Ok(value.to_owned())
}

pub(crate) fn description(value: &str) -> Result<String, InvalidValue> {
    if value.chars().count() > 10_000 {
        return Err(InvalidValue(
            "description must be at most 10000 characters".into(),
        ));
    }
    Ok(value.trim().to_owned())
}

/// A category is a path of up to five `/`-separated names, e.g. `apparel/t-shirts`.
pub(crate) fn category(value: &str) -> Result<String, InvalidValue> {
    let parts: Vec<&str> = value.trim().split('/').map(str::trim).collect();
    let valid = parts.len() <= 5
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().count() <= 60 && !p.chars().any(char::is_control));
    if !valid {
        return Err(InvalidValue(
            "category must be up to five `/`-separated names of 1 to 60 characters".into(),
        ));
    }
    Ok(parts.join("/").to_lowercase())
}

/// A price, checked at `at` (`["price"]`, `["variants", "0", "price"]`): its amount is what
/// can break the rule.
fn price(value: Money, at: &[String], violations: &mut Violations) -> Option<Money> {
    let amount: Vec<String> = at.iter().cloned().chain(["amount".into()]).collect();
    violations.check(&amount, Money::price(value.amount, value.currency))
}

/// Attributes, checked at `at`: each bad one is recorded at its own name.
fn attributes(value: Attributes, at: &[String], violations: &mut Violations) -> Attributes {
    if value.len() > MAX_ATTRIBUTES {
        violations.add(
            at,
            format!(
                "at most {MAX_ATTRIBUTES} attributes are allowed, not {}",
                value.len()
            ),
        );
    }
    for (key, v) in &value {
        let path: Vec<String> = at.iter().cloned().chain([key.clone()]).collect();
        let key_ok = !key.is_empty()
            && key.len() <= 64
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !key_ok {
            violations.add(
                &path,
                format!(
                    "attribute name `{key}` must be 1 to 64 characters of A-Z, a-z, 0-9, `_` or `-`"
                ),
            );
            continue;
        }
        let value_ok = match v {
            serde_json::Value::String(s) => s.chars().count() <= 200,
            serde_json::Value::Number(_) | serde_json::Value::Bool(_) => true,
            _ => false,
        };
        if !value_ok {
            violations.add(
                &path,
                format!(
                    "attribute `{key}` must be a string of at most 200 characters, a number or a \
                     boolean"
                ),
            );
        }
    }
    value
}

fn at(path: &[&str]) -> Vec<String> {
    path.iter().map(|s| (*s).to_owned()).collect()
}

impl ProductDraft {
    /// The draft with every field checked and normalised, or every field that breaks a rule.
    pub fn validated(self) -> Result<Self, ProductError> {
        let mut violations = Violations::default();
        let price = price(self.price, &at(&["price"]), &mut violations);
        if self.variants.len() > MAX_VARIANTS {
            violations.add(
                &["variants"],
                format!(
                    "a product has at most {MAX_VARIANTS} variants, not {}",
                    self.variants.len()
                ),
            );
        }
        let mut variants: Vec<Variant> = Vec::with_capacity(self.variants.len());
        for (i, variant) in self.variants.into_iter().enumerate() {
            let here = at(&["variants", &i.to_string()]);
            if variant.sku == self.sku || variants.iter().any(|v| v.sku == variant.sku) {
                violations.add(
                    &[here.as_slice(), &at(&["sku"])].concat(),
                    format!("SKU {} appears twice in the product", variant.sku),
                );
            }
            let price_at = [here.as_slice(), &at(&["price"])].concat();
            let variant_price = variant
                .price
                .and_then(|p| self::price(p, &price_at, &mut violations));
            if let (Some(own), Some(product)) = (variant_price, price) {
                if own.currency != product.currency {
                    violations.add(
                        &[price_at.as_slice(), &at(&["currency"])].concat(),
                        format!(
                            "a variant is priced in the product's currency ({}), not {}",
                            product.currency, own.currency
                        ),
                    );
                }
            }
            let attributes_at = [here.as_slice(), &at(&["attributes"])].concat();
            variants.push(Variant {
                sku: variant.sku,
                price: variant_price,
                attributes: attributes(variant.attributes, &attributes_at, &mut violations),
            });
        }
        let name = violations.check(&["name"], name(&self.name));
        let description = violations.check(&["description"], description(&self.description));
        let category = violations.check(&["category"], category(&self.category));
        let attributes = attributes(self.attributes, &at(&["attributes"]), &mut violations);
        match (name, description, price, category) {
            (Some(name), Some(description), Some(price), Some(category))
                if violations.is_empty() =>
            {
                Ok(Self {
                    sku: self.sku,
                    name,
                    description,
                    price,
                    category,
                    attributes,
                    variants,
                })
            }
            _ => Err(ProductError::Invalid(violations)),
        }
    }

    /// Every SKU the product sells: its own, then its variants'.
    pub fn skus(&self) -> impl Iterator<Item = &Sku> {
        std::iter::once(&self.sku).chain(self.variants.iter().map(|v| &v.sku))
    }
}

impl Validate for ProductDraft {
    fn violations(&self) -> Violations {
        match self.clone().validated() {
            Err(ProductError::Invalid(violations)) => violations,
            _ => Violations::default(),
        }
    }
}

impl ProductChanges {
    /// The changes with every field checked and normalised, or every field that breaks a rule.
    pub fn validated(self) -> Result<Self, ProductError> {
        let mut violations = Violations::default();
        let changes = Self {
            name: self
                .name
                .as_deref()
                .and_then(|v| violations.check(&["name"], name(v))),
            description: self
                .description
                .as_deref()
                .and_then(|v| violations.check(&["description"], description(v))),
            price: self
                .price
                .and_then(|p| price(p, &at(&["price"]), &mut violations)),
            category: self
                .category
                .as_deref()
                .and_then(|v| violations.check(&["category"], category(v))),
            attributes: self
                .attributes
                .map(|a| attributes(a, &at(&["attributes"]), &mut violations)),
        };
        violations.or(changes).map_err(ProductError::Invalid)
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl Validate for ProductChanges {
    fn violations(&self) -> Violations {
        match self.clone().validated() {
            Err(ProductError::Invalid(violations)) => violations,
            _ => Violations::default(),
        }
    }
}

use serde::Serialize;
use utoipa::ToSchema;

use super::ProductError;
use crate::{Money, Sku};

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

pub(crate) fn name(value: &str) -> Result<String, ProductError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > 200 || value.chars().any(char::is_control) {
        return Err(ProductError::Invalid(
            "name must be 1 to 200 printable characters".into(),
        ));
    }
    Ok(value.to_owned())
}

pub(crate) fn description(value: &str) -> Result<String, ProductError> {
    if value.chars().count() > 10_000 {
        return Err(ProductError::Invalid(
            "description must be at most 10000 characters".into(),
        ));
    }
    Ok(value.trim().to_owned())
}

/// A category is a path of up to five `/`-separated names, e.g. `apparel/t-shirts`.
pub(crate) fn category(value: &str) -> Result<String, ProductError> {
    let parts: Vec<&str> = value.trim().split('/').map(str::trim).collect();
    let valid = parts.len() <= 5
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().count() <= 60 && !p.chars().any(char::is_control));
    if !valid {
        return Err(ProductError::Invalid(
            "category must be up to five `/`-separated names of 1 to 60 characters".into(),
        ));
    }
    Ok(parts.join("/").to_lowercase())
}

pub(crate) fn price(value: Money) -> Result<Money, ProductError> {
    Money::price(value.amount, value.currency).map_err(|e| ProductError::Invalid(e.0))
}

pub(crate) fn attributes(value: Attributes) -> Result<Attributes, ProductError> {
    if value.len() > MAX_ATTRIBUTES {
        return Err(ProductError::Invalid(format!(
            "at most {MAX_ATTRIBUTES} attributes"
        )));
    }
    for (key, v) in &value {
        let key_ok = !key.is_empty()
            && key.len() <= 64
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !key_ok {
            return Err(ProductError::Invalid(format!(
                "attribute name `{key}` must be 1 to 64 characters of A-Z, a-z, 0-9, `_` or `-`"
            )));
        }
        let value_ok = match v {
            serde_json::Value::String(s) => s.chars().count() <= 200,
            serde_json::Value::Number(_) | serde_json::Value::Bool(_) => true,
            _ => false,
        };
        if !value_ok {
            return Err(ProductError::Invalid(format!(
                "attribute `{key}` must be a string of at most 200 characters, a number or a boolean"
            )));
        }
    }
    Ok(value)
}

impl ProductDraft {
    /// The draft with every field checked and normalised.
    pub fn validated(self) -> Result<Self, ProductError> {
        let price = price(self.price)?;
        if self.variants.len() > MAX_VARIANTS {
            return Err(ProductError::Invalid(format!(
                "at most {MAX_VARIANTS} variants"
            )));
        }
        let mut variants = Vec::with_capacity(self.variants.len());
        for variant in self.variants {
            if variant.sku == self.sku || variants.iter().any(|v: &Variant| v.sku == variant.sku) {
                return Err(ProductError::DuplicateSku(variant.sku));
            }
            let variant_price = variant.price.map(self::price).transpose()?;
            if variant_price.is_some_and(|p| p.currency != price.currency) {
                return Err(ProductError::Invalid(
                    "a variant is priced in the product's currency".into(),
                ));
            }
            variants.push(Variant {
                sku: variant.sku,
                price: variant_price,
                attributes: attributes(variant.attributes)?,
            });
        }
        Ok(Self {
            sku: self.sku,
            name: name(&self.name)?,
            description: description(&self.description)?,
            price,
            category: category(&self.category)?,
            attributes: attributes(self.attributes)?,
            variants,
        })
    }

    /// Every SKU the product sells: its own, then its variants'.
    pub fn skus(&self) -> impl Iterator<Item = &Sku> {
        std::iter::once(&self.sku).chain(self.variants.iter().map(|v| &v.sku))
    }
}

impl ProductChanges {
    pub fn validated(self) -> Result<Self, ProductError> {
        Ok(Self {
            name: self.name.as_deref().map(name).transpose()?,
            description: self.description.as_deref().map(description).transpose()?,
            price: self.price.map(price).transpose()?,
            category: self.category.as_deref().map(category).transpose()?,
            attributes: self.attributes.map(attributes).transpose()?,
        })
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

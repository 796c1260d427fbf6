use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{AccountId, InvalidValue, Money, ProductId, Sku};

/// One SKU of an order, priced when the order was placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderLine {
    pub sku: Sku,
    pub product_id: ProductId,
    pub seller_id: AccountId,
    pub quantity: u32,
    pub unit_price: Money,
}

/// Where an order goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, eserde::Deserialize, ToSchema)]
pub struct ShippingAddress {
    pub name: String,
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country: String,
}

fn text(field: &str, value: &str, max: usize) -> Result<String, InvalidValue> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(InvalidValue(format!(
            "shipping_address.{field} must be 1 to {max} printable characters"
        )));
    }
    Ok(value.to_owned())
}

impl ShippingAddress {
    pub fn parse(
        name: &str,
        line1: &str,
        city: &str,
        postal_code: &str,
        country: &str,
    ) -> Result<Self, InvalidValue> {
        Self {
            name: name.into(),
            line1: line1.into(),
            line2: None,
            city: city.into(),
            postal_code: postal_code.into(),
            country: country.into(),
        }
        .validated()
    }

    /// The same address with every field trimmed and checked.
    pub fn validated(self) -> Result<Self, InvalidValue> {
        let country = self.country.trim().to_owned();
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(InvalidValue(
                "shipping_address.country must be an ISO 3166-1 alpha-2 code such as DE".into(),
            ));
        }
        Ok(Self {
            name: text("name", &self.name, 200)?,
            line1: text("line1", &self.line1, 200)?,
            line2: self
                .line2
                .as_deref()
                .map(|l| text("line2", l, 200))
                .transpose()?,
            city: text("city", &self.city, 100)?,
            postal_code: text("postal_code", &self.postal_code, 20)?,
            country,
        })
    }
}

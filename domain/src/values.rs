//! Typed values shared by the aggregates: ids, SKUs, money, e-mail addresses.
//! Each is built through a validating `parse`/`TryFrom`, so an invalid value cannot exist.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A value that failed validation, with a message a client can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

/// One field of a command's input that breaks a rule: where it is, as the keys and array
/// indexes that lead to it in the input (`["variants", "0", "sku"]`), and what is wrong with it,
/// for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub path: Vec<String>,
    pub message: String,
}

/// Every field of an input that breaks a rule, gathered so that a caller hears of all of them
/// at once rather than of the first. Empty when the input keeps every rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// Records that the field at `path` breaks a rule.
    pub fn add<S: ToString>(&mut self, path: &[S], message: impl Into<String>) {
        self.0.push(FieldViolation {
            path: path.iter().map(ToString::to_string).collect(),
            message: message.into(),
        });
    }

    /// The value of a check of the field at `path`, or `None` with its error recorded.
    pub fn check<T, E: fmt::Display, S: ToString>(
        &mut self,
        path: &[S],
        result: Result<T, E>,
    ) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.add(path, error.to_string());
                None
            }
        }
    }

    /// Takes in the violations of a part of the input found at `prefix`.
    pub fn nest<S: ToString>(&mut self, prefix: &[S], inner: Violations) {
        for mut violation in inner.0 {
            let mut path: Vec<String> = prefix.iter().map(ToString::to_string).collect();
            path.append(&mut violation.path);
            violation.path = path;
            self.0.push(violation);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &FieldViolation> {
        self.0.iter()
    }

    /// `Ok(value)` when nothing was recorded, else the violations.
    pub fn or<T>(self, value: T) -> Result<T, Self> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl IntoIterator for Violations {
    type Item = FieldViolation;
    type IntoIter = std::vec::IntoIter<FieldViolation>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let messages: Vec<&str> = self.0.iter().map(|v| v.message.as_str()).collect();
        f.write_str(&messages.join("; "))
    }
}

impl std::error::Error for Violations {}

/// Input to a command that can be checked on its own, before the command is sent: every field
/// that breaks a rule, at once. The aggregate applies the same rules again when it decides (it
/// is the truth); checking first only lets the caller hear of every bad field, each with where
/// it is, rather than of the first one the aggregate meets.
pub trait Validate {
    fn violations(&self) -> Violations;
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered (v7) id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self(Uuid::nil())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        eserde::impl_edeserialize_compat!($name);

        impl std::str::FromStr for $name {
            type Err = InvalidValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|_| InvalidValue(format!("`{s}` is not a UUID")))
            }
        }
    };
}

uuid_id!(
    /// Identifies an account (buyer, seller or admin). A buyer's id is also their cart's id.
    AccountId
);
uuid_id!(
    /// Identifies a product.
    ProductId
);
uuid_id!(
    /// Identifies an order.
    OrderId
);
uuid_id!(
    /// Identifies a payment (one per order).
    PaymentId
);
uuid_id!(
    /// Identifies a shipping method.
    ShippingMethodId
);

impl PaymentId {
    /// The payment of an order: one per order, derived so that a retried step finds the same one.
    pub fn for_order(order: OrderId) -> Self {
        Self(Uuid::new_v5(&order.0, b"payment"))
    }
}

/// The payment provider's token for a buyer's card: 1 to 200 printable characters. It goes to the
/// provider and nowhere else: never into an event (the `payment_tokens` table keeps it until the
/// payment is final), and never into a log line, so `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct PaymentToken(String);

impl PaymentToken {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let valid =
            !value.trim().is_empty() && value.len() <= 200 && !value.chars().any(char::is_control);
        if valid {
            Ok(Self(value.to_owned()))
        } else {
            Err(InvalidValue(
                "payment_token must be 1 to 200 printable characters".into(),
            ))
        }
    }

    /// The token itself, for the provider.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PaymentToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PaymentToken(<redacted>)")
    }
}

/// A seller-chosen stock keeping unit: `[A-Za-z0-9._-]{1,64}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, pattern = "^[A-Za-z0-9._-]{1,64}$", example = "TSHIRT-RED-M")]
pub struct Sku(String);

impl Sku {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let valid = !value.is_empty()
            && value.len() <= 64
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if valid {
            Ok(Self(value.to_owned()))
        } else {
            Err(InvalidValue(format!(
                "SKU `{value}` must be 1 to 64 characters of A-Z, a-z, 0-9, `.`, `_` or `-`"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Sku {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Sku> for String {
    fn from(value: Sku) -> Self {
        value.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An ISO 4217 currency code: three upper-case letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, pattern = "^[A-Z]{3}$", example = "EUR")]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        match value.as_bytes() {
            [a, b, c] if [a, b, c].iter().all(|x| x.is_ascii_uppercase()) => Ok(Self([*a, *b, *c])),
            _ => Err(InvalidValue(format!(
                "currency `{value}` must be an ISO 4217 code such as EUR"
            ))),
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters get in through `parse`.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl TryFrom<String> for Currency {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> Self {
        value.as_str().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An amount of money in integer minor units (cents) of one currency. Never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, eserde::Deserialize, ToSchema)]
pub struct Money {
    /// Minor units, e.g. 1999 for 19.99 EUR.
    pub amount: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount: i64, currency: Currency) -> Self {
        Self { amount, currency }
    }

    /// A price: non-negative and below a trillion minor units, so totals cannot overflow.
    pub fn price(amount: i64, currency: Currency) -> Result<Self, InvalidValue> {
        if (0..1_000_000_000_000).contains(&amount) {
            Ok(Self { amount, currency })
        } else {
            Err(InvalidValue(format!(
                "price amount {amount} must be between 0 and 999999999999 minor units"
            )))
        }
    }

    pub fn zero(currency: Currency) -> Self {
        Self {
            amount: 0,
            currency,
        }
    }

    /// `self × quantity`, or `None` on overflow.
    pub fn times(self, quantity: u32) -> Option<Self> {
        self.amount
            .checked_mul(i64::from(quantity))
            .map(|amount| Self { amount, ..self })
    }

    /// `self + other`, or `None` when the currencies differ or the sum overflows.
    pub fn plus(self, other: Self) -> Option<Self> {
        if self.currency != other.currency {
            return None;
        }
        self.amount
            .checked_add(other.amount)
            .map(|amount| Self { amount, ..self })
    }
}

/// A normalised (trimmed, lower-case) e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, format = "email", example = "ada@example.com")]
pub struct Email(String);

impl Email {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let value = value.trim().to_lowercase();
        let valid = value.len() <= 254
            && value.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !value.chars().any(|c| c.is_whitespace() || c.is_control())
                    && !domain.contains('@')
            });
        if valid {
            Ok(Self(value))
        } else {
            Err(InvalidValue(format!(
                "email `{value}` is not an e-mail address such as ada@example.com"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Email> for String {
    fn from(value: Email) -> Self {
        value.0
    }
}

// Values parsed through `TryFrom<String>` (or a UUID) report one error each, in their own words.
eserde::impl_edeserialize_compat!(Sku, Currency, Email, Role);

/// Who may do what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Buyer,
    Seller,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Buyer => "buyer",
            Role::Seller => "seller",
            Role::Admin => "admin",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payment_token_is_printable_and_never_debug_printed() {
        let token = PaymentToken::parse("tok_secret_4242").unwrap();
        assert_eq!(token.expose(), "tok_secret_4242");
        assert!(!format!("{token:?}").contains("4242"));
        for bad in ["", "   ", "tok\0nul", "tok\nline", &"x".repeat(201)] {
            let error = PaymentToken::parse(bad).unwrap_err();
            assert!(error.0.contains("payment_token"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn sku_accepts_the_documented_alphabet_only() {
        assert!(Sku::parse("TSHIRT-red_M.1").is_ok());
        assert!(Sku::parse("").is_err());
        assert!(Sku::parse("has space").is_err());
        assert!(Sku::parse(&"a".repeat(65)).is_err());
        assert!(Sku::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn money_refuses_mixed_currencies_and_overflow() {
        let eur = Currency::parse("EUR").unwrap();
        let usd = Currency::parse("USD").unwrap();
        assert_eq!(
            Money::new(1, eur).plus(Money::new(2, eur)),
            Some(Money::new(3, eur))
        );
        assert_eq!(Money::new(1, eur).plus(Money::new(2, usd)), None);
        assert_eq!(Money::new(i64::MAX, eur).times(2), None);
        assert!(Money::price(-1, eur).is_err());
        assert!(Currency::parse("eur").is_err());
    }

    #[test]
    fn email_is_normalised() {
        assert_eq!(
            Email::parse(" Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        assert!(Email::parse("nobody").is_err());
        assert!(Email::parse("a@b").is_err());
    }
}

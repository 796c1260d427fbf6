//! The commerce domain: aggregates, their commands, events and errors. Pure: no I/O.
//!
//! Each aggregate lives in its own module (`cart`, `order`, `inventory`, `payment`, `product`,
//! `account`) split into `commands`, `events`, `error` and `aggregate` (the rules, with their
//! given/when/then tests). Facts an aggregate cannot know itself (a SKU's catalog entry, say)
//! arrive inside the command, resolved by the caller, so every rule stays testable without I/O.
//! Events are a public contract: once released, a variant's shape changes only as a new version
//! with an upcaster from the old one (`upcast`).

pub mod account;
pub mod cart;
pub mod checkout;
pub mod inventory;
pub mod order;
pub mod payment;
pub mod privacy;
pub mod product;
pub mod review;
pub mod services;
pub mod upcast;
pub mod values;

pub use values::{
    AccountId, Currency, Email, InvalidValue, Money, OrderId, PaymentId, PaymentToken, ProductId,
    Role, ShippingMethodId, Sku,
};

/// The version every event type starts at; [`upcast`] holds the later ones.
pub const EVENT_VERSION: &str = "1.0";

/// Implements `cqrs_es::DomainEvent` for the events of aggregate `$aggregate`: the variant's
/// name as the event type, and its current version from the upcaster chain.
macro_rules! domain_event {
    ($ty:ident for $aggregate:path { $($variant:ident),+ $(,)? }) => {
        impl cqrs_es::DomainEvent for $ty {
            fn event_type(&self) -> String {
                match self {
                    $(Self::$variant { .. } => stringify!($variant).to_owned(),)+
                }
            }

            fn event_version(&self) -> String {
                let aggregate_type = <$aggregate as cqrs_es::Aggregate>::TYPE;
                match self {
                    $(Self::$variant { .. } => {
                        crate::upcast::current_version(aggregate_type, stringify!($variant))
                    })+
                }
            }
        }

        impl $ty {
            /// Every type of event of this enum, as `event_type` names them.
            pub const EVENT_TYPES: &'static [&'static str] = &[$(stringify!($variant)),+];
        }
    };
}
pub(crate) use domain_event;

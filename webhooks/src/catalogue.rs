//! The public catalogue of event types a webhook can subscribe to: every event the domain
//! records, named `<aggregate type>.<event type>` (`order.OrderPlaced`, `inventory.Restocked`;
//! two aggregates both record a `PaymentAuthorized`), with whether a seller's webhook may
//! receive it. A subscription names types, `<aggregate type>.*` or `*`.

use commerce_domain::account::{Account, AccountEvent};
use commerce_domain::cart::{Cart, CartEvent};
use commerce_domain::checkout::{CheckoutSaga, SagaEvent};
use commerce_domain::inventory::{Inventory, InventoryEvent};
use commerce_domain::order::{Order, OrderEvent};
use commerce_domain::payment::{Payment, PaymentEvent};
use commerce_domain::product::{Product, ProductEvent};
use commerce_domain::review::{Review, ReviewEvent};
use cqrs_es::Aggregate;
use serde::Serialize;
use utoipa::ToSchema;

use crate::scope::SELLER_AGGREGATES;

/// Subscribes to every event type (a seller: every type it may receive).
pub const ALL: &str = "*";

/// One type of event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct EventType {
    /// `<aggregate_type>.<event_type>`, as deliveries' `type` names it.
    #[serde(rename = "type")]
    pub name: String,
    /// The aggregate whose stream records it.
    pub aggregate_type: &'static str,
    /// The event's own name.
    pub event_type: &'static str,
    /// Whether a seller's webhook may subscribe to it (about the seller's products, SKUs and
    /// order lines only).
    pub sellers: bool,
}

/// Every event type, grouped by aggregate.
pub fn all() -> Vec<EventType> {
    let groups: [(&'static str, &'static [&'static str]); 8] = [
        (Product::TYPE, ProductEvent::EVENT_TYPES),
        (Inventory::TYPE, InventoryEvent::EVENT_TYPES),
        (Order::TYPE, OrderEvent::EVENT_TYPES),
        (Review::TYPE, ReviewEvent::EVENT_TYPES),
        (Payment::TYPE, PaymentEvent::EVENT_TYPES),
        (Cart::TYPE, CartEvent::EVENT_TYPES),
        (Account::TYPE, AccountEvent::EVENT_TYPES),
        (CheckoutSaga::TYPE, SagaEvent::EVENT_TYPES),
    ];
    groups
        .into_iter()
        .flat_map(|(aggregate_type, names)| {
            names.iter().map(move |event_type| EventType {
                name: type_name(aggregate_type, event_type),
                aggregate_type,
                event_type,
                sellers: SELLER_AGGREGATES.contains(&aggregate_type),
            })
        })
        .collect()
}

/// How deliveries name the type of an event.
pub fn type_name(aggregate_type: &str, event_type: &str) -> String {
    format!("{aggregate_type}.{event_type}")
}

/// Whether a subscription's pattern (a type, `<aggregate type>.*` or `*`) takes this event.
pub fn matches(pattern: &str, aggregate_type: &str, event_type: &str) -> bool {
    if pattern == ALL {
        return true;
    }
    match pattern.split_once('.') {
        Some((aggregate, "*")) => aggregate == aggregate_type,
        Some((aggregate, event)) => aggregate == aggregate_type && event == event_type,
        None => false,
    }
}

/// Why a pattern is not one a caller of `role` may subscribe to; `None` when it is.
pub fn refusal(pattern: &str, seller: bool) -> Option<String> {
    if pattern == ALL {
        return None;
    }
    let known = all();
    let Some((aggregate, event)) = pattern.split_once('.') else {
        return Some(format!(
            "`{pattern}` is no event type: name one as `<aggregate type>.<event type>`, \
             `<aggregate type>.*` or `*` (see GET /v1/webhooks/event-types)"
        ));
    };
    let group: Vec<&EventType> = known
        .iter()
        .filter(|t| t.aggregate_type == aggregate && (event == "*" || t.event_type == event))
        .collect();
    if group.is_empty() {
        return Some(format!(
            "`{pattern}` is no event type: see GET /v1/webhooks/event-types"
        ));
    }
    if seller && group.iter().any(|t| !t.sellers) {
        return Some(format!(
            "`{pattern}` is not about a seller's products, SKUs or order lines"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(name: &str) -> Option<EventType> {
        all().into_iter().find(|t| t.name == name)
    }

    #[test]
    fn every_type_is_named_once_and_sellers_get_their_aggregates_only() {
        let types = all();
        let mut names: Vec<&str> = types.iter().map(|t| t.name.as_str()).collect();
        names.sort();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "an event type is named twice");
        assert!(find("order.OrderPlaced").is_some_and(|t| t.sellers));
        assert!(find("inventory.Restocked").is_some_and(|t| t.sellers));
        assert!(find("order.PaymentAuthorized").is_some_and(|t| t.sellers));
        assert!(find("payment.PaymentAuthorized").is_some_and(|t| !t.sellers));
        assert!(find("account.AccountRegistered").is_some_and(|t| !t.sellers));
    }

    #[test]
    fn patterns_name_a_type_an_aggregate_or_everything() {
        assert!(matches("*", "cart", "ItemAdded"));
        assert!(matches("order.*", "order", "OrderPlaced"));
        assert!(!matches("order.*", "payment", "PaymentAuthorized"));
        assert!(matches("order.OrderPlaced", "order", "OrderPlaced"));
        assert!(!matches("order.OrderPlaced", "order", "OrderShipped"));
        assert!(!matches("OrderPlaced", "order", "OrderPlaced"));
    }

    #[test]
    fn sellers_may_not_subscribe_to_what_is_not_theirs() {
        assert_eq!(refusal("order.OrderPlaced", true), None);
        assert_eq!(refusal("inventory.*", true), None);
        assert_eq!(refusal("*", true), None);
        assert!(refusal("payment.*", true).is_some());
        assert!(refusal("account.AccountRegistered", true).is_some());
        assert_eq!(refusal("account.AccountRegistered", false), None);
        assert!(refusal("order.Nope", false).is_some());
        assert!(refusal("nope.*", false).is_some());
        assert!(refusal("OrderPlaced", false).is_some());
    }
}

//! Event versions and the upcasters that bring an old event up to its type's current version.
//!
//! An event type is never changed once released: a new shape is a new version, and the store
//! keeps every event as it was written, with its `event_version` (`"1.0"`, `"2.0"`, …). Whoever
//! reads events (the store loading an aggregate, the relay, the projections healing a gap, a
//! replay, a dead letter's retry) passes each through [`upcast`] before decoding it, so the
//! code only ever decodes the current shape.
//!
//! The chain is one table, [`chain`]: per `(aggregate type, event type)`, the steps from version
//! 1, `steps[n - 1]` taking a payload of version `n` to `n + 1`. A type's current version is one
//! more than its number of steps; [`cqrs_es::DomainEvent::event_version`] reads it from here, so
//! adding a step is all it takes to write the new version. The key holds the aggregate type
//! because event type names repeat across aggregates (`InventoryReserved` is an order's event
//! and a checkout saga's).
//!
//! A step takes the whole payload as stored (`{"<EventType>": {...fields}}`) and returns it one
//! version on. A payload a step does not recognise is returned unchanged: decoding it then fails
//! with the decoder's message, which names the missing field.

use serde_json::{json, Value};

/// One version step of an event type's payload.
pub type Step = fn(Value) -> Value;

/// Why an event could not be brought to its current version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpcastError {
    /// The stored version is not `<n>.0`.
    #[error("{aggregate_type} event {event_type} has version `{version}`, which is not a version (`<n>.0`)")]
    Malformed {
        aggregate_type: String,
        event_type: String,
        version: String,
    },
    /// An engine newer than this one wrote it.
    #[error("{aggregate_type} event {event_type} has version {version}, newer than this engine reads (up to {current}.0): upgrade the engine before reading it")]
    Unknown {
        aggregate_type: String,
        event_type: String,
        version: String,
        current: u32,
    },
}

/// The steps of one event type, from version 1 on.
fn chain(aggregate_type: &str, event_type: &str) -> &'static [Step] {
    match (aggregate_type, event_type) {
        ("account", "AccountRegistered") => &[
            |payload| without(payload, "AccountRegistered", "password_hash"),
            personal_data_sealed,
        ],
        ("order", "OrderPlaced") => &[
            order_placed_v1_to_v2,
            // The payment token goes: the saga reads it from `payment_tokens` (where the
            // migration that made the table copied the tokens of payments still open).
            |payload| without(payload, "OrderPlaced", "payment_token"),
            personal_data_sealed,
        ],
        ("cart", "CheckedOut") => &[|payload| without(payload, "CheckedOut", "shipping_address")],
        ("review", "ReviewWritten") => &[review_written_v1_to_v2],
        _ => &[],
    }
}

/// The version an event type is written at now, as a number.
pub fn current(aggregate_type: &str, event_type: &str) -> u32 {
    u32::try_from(chain(aggregate_type, event_type).len()).unwrap_or(u32::MAX - 1) + 1
}

/// The version an event type is written at now, as stored (`"2.0"`).
pub fn current_version(aggregate_type: &str, event_type: &str) -> String {
    label(current(aggregate_type, event_type))
}

fn label(version: u32) -> String {
    format!("{version}.0")
}

/// `"<n>.0"` (or a bare `"<n>"`) as `n`, from 1.
fn parse(version: &str) -> Option<u32> {
    let major = match version.split_once('.') {
        Some((major, "0")) => major,
        Some(_) => return None,
        None => version,
    };
    major.parse().ok().filter(|n| *n >= 1)
}

/// Brings a stored event to its type's current version: `(version, payload)`. An event already
/// at the current version comes back as it was; one of a version this engine does not know yet
/// (written by a newer one) is an error, never guessed at.
pub fn upcast(
    aggregate_type: &str,
    event_type: &str,
    version: &str,
    payload: Value,
) -> Result<(String, Value), UpcastError> {
    let steps = chain(aggregate_type, event_type);
    let current = current(aggregate_type, event_type);
    let from = parse(version).ok_or_else(|| UpcastError::Malformed {
        aggregate_type: aggregate_type.to_owned(),
        event_type: event_type.to_owned(),
        version: version.to_owned(),
    })?;
    if from == current {
        return Ok((version.to_owned(), payload));
    }
    if from > current {
        return Err(UpcastError::Unknown {
            aggregate_type: aggregate_type.to_owned(),
            event_type: event_type.to_owned(),
            version: version.to_owned(),
            current,
        });
    }
    let skip = usize::try_from(from - 1).unwrap_or(usize::MAX);
    let payload = steps.iter().skip(skip).fold(payload, |p, step| step(p));
    Ok((label(current), payload))
}

/// `OrderPlaced` 1 → 2: the price breakdown. Before pricing, an order's total was the sum of its
/// lines: that is its subtotal; no discount, shipping or tax (zero in the total's currency); no
/// promotion code or shipping method.
fn order_placed_v1_to_v2(mut payload: Value) -> Value {
    let Some(placed) = payload
        .get_mut("OrderPlaced")
        .and_then(Value::as_object_mut)
    else {
        return payload;
    };
    let Some(total) = placed.get("total").cloned() else {
        return payload;
    };
    let zero =
        json!({ "amount": 0, "currency": total.get("currency").cloned().unwrap_or(Value::Null) });
    placed.insert("subtotal".into(), total);
    for field in ["discount", "shipping", "tax"] {
        placed.insert(field.into(), zero.clone());
    }
    placed.insert("promotion_code".into(), Value::Null);
    placed.insert("shipping_method_id".into(), Value::Null);
    payload
}

/// The payload without `event`'s `field`: how a credential, or personal data kept elsewhere, is
/// cleaned out of older events for everyone who reads them (the store, the relay, the admin
/// views, rebuilds).
fn without(mut payload: Value, event: &str, field: &str) -> Value {
    if let Some(fields) = payload.get_mut(event).and_then(Value::as_object_mut) {
        fields.remove(field);
    }
    payload
}

/// The version at which personal fields became sealed values (`privacy::Sealed`). Nothing to
/// change in an older payload: a `privacy::Personal` field reads values in the clear too. The
/// version tells an older engine that it cannot read the new shape.
fn personal_data_sealed(payload: Value) -> Value {
    payload
}

/// `ReviewWritten` 1 → 2: the author's display name, sealed for them; reviews written before
/// had none (readers show them without a name).
fn review_written_v1_to_v2(mut payload: Value) -> Value {
    if let Some(fields) = payload
        .get_mut("ReviewWritten")
        .and_then(Value::as_object_mut)
    {
        fields.entry("author_name").or_insert(Value::Null);
    }
    payload
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::OrderEvent;

    /// An `OrderPlaced` exactly as version 1 wrote it.
    fn placed_v1() -> Value {
        json!({"OrderPlaced": {
            "buyer_id": "0195d2a8-0000-7000-8000-000000000003",
            "lines": [
                {"sku": "MUG", "product_id": "0195d2a8-0000-7000-8000-000000000001",
                 "seller_id": "0195d2a8-0000-7000-8000-000000000002", "quantity": 2,
                 "unit_price": {"amount": 500, "currency": "EUR"}},
                {"sku": "TEE", "product_id": "0195d2a8-0000-7000-8000-000000000004",
                 "seller_id": "0195d2a8-0000-7000-8000-000000000002", "quantity": 1,
                 "unit_price": {"amount": 250, "currency": "EUR"}}
            ],
            "total": {"amount": 1250, "currency": "EUR"},
            "payment_id": "0195d2a8-0000-7000-8000-000000000005",
            "payment_token": "tok_ok",
            "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Paris",
                                 "postal_code": "75001", "country": "FR"}
        }})
    }

    #[test]
    fn order_placed_1_gains_the_price_breakdown_of_an_order_without_pricing() {
        let (version, payload) = upcast("order", "OrderPlaced", "1.0", placed_v1()).unwrap();
        assert_eq!(version, current_version("order", "OrderPlaced"));
        let placed = &payload["OrderPlaced"];
        let eur = |amount: i64| json!({"amount": amount, "currency": "EUR"});
        assert_eq!(placed["subtotal"], eur(1250));
        assert_eq!(placed["discount"], eur(0));
        assert_eq!(placed["shipping"], eur(0));
        assert_eq!(placed["tax"], eur(0));
        assert_eq!(placed["total"], eur(1250));
        assert_eq!(placed["promotion_code"], Value::Null);
        assert_eq!(placed["shipping_method_id"], Value::Null);
        // The rest is untouched, and the result is the current event.
        assert_eq!(placed["lines"], placed_v1()["OrderPlaced"]["lines"]);
        let event: OrderEvent = serde_json::from_value(payload).unwrap();
        assert!(
            matches!(event, OrderEvent::OrderPlaced { subtotal, .. } if subtotal.amount == 1250)
        );
    }

    #[test]
    fn account_registered_1_loses_its_password_hash() {
        let v1 = json!({"AccountRegistered": {
            "email": "ada@example.com", "name": "Ada", "role": "buyer",
            "password_hash": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"
        }});
        let (version, payload) = upcast("account", "AccountRegistered", "1.0", v1).unwrap();
        assert_eq!(version, current_version("account", "AccountRegistered"));
        assert_eq!(
            payload,
            json!({"AccountRegistered": {"email": "ada@example.com", "name": "Ada", "role": "buyer"}})
        );
        let event: crate::account::AccountEvent = serde_json::from_value(payload).unwrap();
        use cqrs_es::DomainEvent;
        assert_eq!(event.event_version(), version);
    }

    #[test]
    fn order_placed_2_loses_the_payment_token_and_nothing_else() {
        let v2 = order_placed_v1_to_v2(placed_v1());
        assert_eq!(v2["OrderPlaced"]["payment_token"], "tok_ok");
        let (version, v3) = upcast("order", "OrderPlaced", "2.0", v2.clone()).unwrap();
        assert_eq!(version, current_version("order", "OrderPlaced"));
        assert!(!v3.to_string().contains("tok_ok"), "{v3}");
        let mut expected = v2;
        expected["OrderPlaced"]
            .as_object_mut()
            .unwrap()
            .remove("payment_token");
        assert_eq!(v3, expected);
        // Straight from version 1 as well.
        let (_, from_v1) = upcast("order", "OrderPlaced", "1.0", placed_v1()).unwrap();
        assert_eq!(from_v1, v3);
    }

    #[test]
    fn an_event_at_its_current_version_is_left_as_it_is() {
        let (current, upcast_v1) = upcast("order", "OrderPlaced", "1.0", placed_v1()).unwrap();
        let mut changed = upcast_v1.clone();
        changed["OrderPlaced"]["discount"]["amount"] = json!(100);
        assert_eq!(
            upcast("order", "OrderPlaced", &current, changed.clone()).unwrap(),
            (current, changed)
        );
        let restocked = json!({"Restocked": {"quantity": 3}});
        assert_eq!(
            upcast("inventory", "Restocked", "1.0", restocked.clone()).unwrap(),
            ("1.0".to_owned(), restocked)
        );
    }

    #[test]
    fn the_chain_is_per_aggregate_type() {
        // The checkout saga's events share names with the order's; only the order's change.
        assert_ne!(current_version("order", "OrderPlaced"), "1.0");
        assert_eq!(current_version("checkout_saga", "OrderPlaced"), "1.0");
        let payload = json!({"OrderPlaced": {"total": {"amount": 1, "currency": "EUR"}}});
        assert_eq!(
            upcast("checkout_saga", "OrderPlaced", "1.0", payload.clone()).unwrap(),
            ("1.0".to_owned(), payload)
        );
    }

    #[test]
    fn a_version_newer_than_the_engine_is_an_error() {
        let current = current("order", "OrderPlaced");
        let newer = label(current + 1);
        let error = upcast("order", "OrderPlaced", &newer, placed_v1()).unwrap_err();
        assert!(matches!(error, UpcastError::Unknown { current: c, .. } if c == current));
        assert!(error.to_string().contains("upgrade the engine"), "{error}");
        assert!(matches!(
            upcast("inventory", "Restocked", "2.0", json!({})),
            Err(UpcastError::Unknown { current: 1, .. })
        ));
        for malformed in ["", "two", "1.5", "0.0", "-1.0"] {
            assert!(
                matches!(
                    upcast("order", "OrderPlaced", malformed, placed_v1()),
                    Err(UpcastError::Malformed { .. })
                ),
                "{malformed}"
            );
        }
    }

    #[test]
    fn new_events_are_written_at_their_current_version() {
        use cqrs_es::DomainEvent;
        let event: OrderEvent = serde_json::from_value(
            upcast("order", "OrderPlaced", "1.0", placed_v1())
                .unwrap()
                .1,
        )
        .unwrap();
        assert_eq!(
            event.event_version(),
            current_version("order", "OrderPlaced")
        );
        assert_eq!(OrderEvent::OrderConfirmed.event_version(), "1.0");
    }

    #[test]
    fn a_checked_out_cart_1_loses_the_address_the_order_keeps_sealed() {
        let checked_out = json!({"CheckedOut": {"order_id": "0195d2a8-0000-7000-8000-000000000005",
                                 "lines": [], "total": {"amount": 1, "currency": "EUR"},
                                 "shipping_address": {"name": "Ada", "city": "Paris"}}});
        let (_, payload) = upcast("cart", "CheckedOut", "1.0", checked_out).unwrap();
        assert!(!payload.to_string().contains("Paris"), "{payload}");
        let event: crate::cart::CartEvent = serde_json::from_value(payload).unwrap();
        assert!(matches!(event, crate::cart::CartEvent::CheckedOut { .. }));
    }
}

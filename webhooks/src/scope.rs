//! Which sellers an event is about, and what a seller may see of it.
//!
//! A seller's webhook receives the events of its own products (the product's stream and its
//! reviews), its SKUs (their inventory) and the orders holding its lines, with an order's data
//! limited to those lines: never another seller's lines, nor the order's amounts, nor who the
//! buyer is. Carts, accounts, payments and checkout sagas are never a seller's.
//!
//! Ownership comes from the events themselves (a product's creation names its seller and SKUs;
//! an order's placement names each line's seller), kept by the fan-out in `webhook_owners` as
//! it reads them, so the same rule decides for live deliveries and for replays.

use anyhow::Context;
use commerce_domain::order::OrderEvent;
use commerce_domain::product::ProductEvent;
use commerce_domain::AccountId;
use commerce_projections::StoredEvent;
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// The aggregate types a seller's webhook may follow.
pub const SELLER_AGGREGATES: &[&str] = &["product", "inventory", "order", "review"];

/// The ownership an event establishes: `(subject, sellers)` rows for `webhook_owners`.
pub fn owners_established(event: &StoredEvent) -> anyhow::Result<Vec<(String, Vec<Uuid>)>> {
    match (event.aggregate_type.as_str(), event.event_type.as_str()) {
        ("product", "ProductCreated") => {
            let ProductEvent::ProductCreated { seller_id, product } =
                event.decode().context("decoding a product's creation")?
            else {
                return Ok(Vec::new());
            };
            let seller = vec![seller_id.0];
            let mut rows = vec![(format!("product:{}", event.aggregate_id), seller.clone())];
            rows.push((format!("sku:{}", product.sku), seller.clone()));
            for variant in &product.variants {
                rows.push((format!("sku:{}", variant.sku), seller.clone()));
            }
            Ok(rows)
        }
        ("order", "OrderPlaced") => {
            let OrderEvent::OrderPlaced { lines, .. } =
                event.decode().context("decoding an order's placement")?
            else {
                return Ok(Vec::new());
            };
            let mut sellers: Vec<Uuid> = lines.iter().map(|line| line.seller_id.0).collect();
            sellers.sort();
            sellers.dedup();
            Ok(vec![(format!("order:{}", event.aggregate_id), sellers)])
        }
        _ => Ok(Vec::new()),
    }
}

/// The `webhook_owners` subject whose sellers an event concerns; `None` for events that are
/// never a seller's.
pub fn subject_of(event: &StoredEvent) -> Option<String> {
    match event.aggregate_type.as_str() {
        "product" => Some(format!("product:{}", event.aggregate_id)),
        "inventory" => Some(format!("sku:{}", event.aggregate_id)),
        "order" => Some(format!("order:{}", event.aggregate_id)),
        "review" => {
            let data = data_of(&event.payload, &event.event_type);
            let product = data.get("product_id")?.as_str()?;
            Some(format!("product:{product}"))
        }
        _ => None,
    }
}

/// The fields of the event's variant: the payload without its enum tag (`{}` for a variant
/// without fields).
pub fn data_of(payload: &Value, event_type: &str) -> Value {
    match payload {
        Value::Object(fields) if fields.len() == 1 && fields.contains_key(event_type) => {
            match &fields[event_type] {
                Value::Object(_) => fields[event_type].clone(),
                Value::Null => json!({}),
                other => json!({ "value": other }),
            }
        }
        Value::String(tag) if tag == event_type => json!({}),
        other => other.clone(),
    }
}

/// What `seller` may see of an event's data (already known to concern them).
pub fn for_seller(event_type: &str, data: Value, seller: AccountId) -> Value {
    let Value::Object(mut fields) = data else {
        return data;
    };
    match event_type {
        "OrderPlaced" => {
            let own: Vec<Value> = fields
                .remove("lines")
                .and_then(|lines| match lines {
                    Value::Array(lines) => Some(lines),
                    _ => None,
                })
                .unwrap_or_default()
                .into_iter()
                .filter(|line| line["seller_id"].as_str() == Some(&seller.0.to_string()))
                .collect();
            let total = own_total(&own);
            let mut limited = Map::new();
            limited.insert("lines".into(), Value::Array(own));
            if let Some(total) = total {
                limited.insert("total".into(), total);
            }
            for kept in ["shipping_method_id", "shipping_address"] {
                if let Some(value) = fields.remove(kept) {
                    limited.insert(kept.into(), value);
                }
            }
            Value::Object(limited)
        }
        _ => {
            // Who cancelled, who reviewed: accounts of others.
            for other_account in ["buyer_id", "cancelled_by"] {
                fields.remove(other_account);
            }
            Value::Object(fields)
        }
    }
}

/// The sum of the seller's lines, as an order's total is written (`{amount, currency}`).
fn own_total(lines: &[Value]) -> Option<Value> {
    let currency = lines.first()?["unit_price"]["currency"].clone();
    let mut amount: i64 = 0;
    for line in lines {
        let unit = line["unit_price"]["amount"].as_i64()?;
        let quantity = line["quantity"].as_i64()?;
        amount = amount.checked_add(unit.checked_mul(quantity)?)?;
    }
    Some(json!({ "amount": amount, "currency": currency }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_is_the_variant_without_its_tag() {
        assert_eq!(
            data_of(&json!({"OrderShipped": {"carrier": "DHL"}}), "OrderShipped"),
            json!({"carrier": "DHL"})
        );
        assert_eq!(
            data_of(&json!("OrderConfirmed"), "OrderConfirmed"),
            json!({})
        );
    }

    #[test]
    fn a_seller_sees_only_its_lines_of_an_order_and_no_amounts_or_buyer() {
        let (mine, theirs) = (Uuid::now_v7(), Uuid::now_v7());
        let line = |seller: Uuid, sku: &str, amount: i64| {
            json!({"sku": sku, "seller_id": seller, "quantity": 2,
                   "unit_price": {"amount": amount, "currency": "EUR"}})
        };
        let data = json!({
            "buyer_id": Uuid::now_v7(),
            "lines": [line(mine, "A-1", 150), line(theirs, "B-1", 999)],
            "subtotal": {"amount": 2298, "currency": "EUR"},
            "total": {"amount": 2298, "currency": "EUR"},
            "payment_id": Uuid::now_v7(),
            "shipping_method_id": null,
            "shipping_address": {"city": "Lyon"},
        });
        let seen = for_seller("OrderPlaced", data, AccountId(mine));
        assert_eq!(seen["lines"], json!([line(mine, "A-1", 150)]));
        assert_eq!(seen["total"], json!({"amount": 300, "currency": "EUR"}));
        for hidden in ["buyer_id", "subtotal", "payment_id"] {
            assert!(seen.get(hidden).is_none(), "{hidden} shown to a seller");
        }
        assert_eq!(seen["shipping_address"], json!({"city": "Lyon"}));
    }
}

//! Which sellers an event is about, and what a seller may see of it.
//!
//! A seller's webhook receives the events of its own products (the product's stream and its
//! reviews), its SKUs (their inventory) and the orders holding its lines, with an order's data
//! limited to those lines: never another seller's lines, nor the order's amounts, nor who the
//! buyer is. Carts, accounts, payments and checkout sagas are never a seller's.
//!
//! Who owns what is read from what was committed before the event could be: a SKU's and a
//! product's seller from the SKU's claim (written with the product's creation), an order's
//! sellers from its placement (the first event of its stream). Nothing depends on the order in
//! which the fan-out meets events of different aggregates (several processes share its
//! consumer), and nothing needs to have been seen before: the same answer live and on replay.

use std::collections::{BTreeSet, HashMap};

use anyhow::Context;
use commerce_domain::order::OrderEvent;
use commerce_domain::AccountId;
use commerce_projections::envelope::COLUMNS;
use commerce_projections::StoredEvent;
use serde_json::{json, Map, Value};
use sqlx::PgConnection;
use uuid::Uuid;

/// The aggregate types a seller's webhook may follow.
pub const SELLER_AGGREGATES: &[&str] = &["product", "inventory", "order", "review"];

/// The sellers each subject of `events` ([`subject_of`]) belongs to.
pub async fn sellers_of(
    conn: &mut PgConnection,
    events: &[StoredEvent],
) -> anyhow::Result<HashMap<Subject, Vec<Uuid>>> {
    let subjects: BTreeSet<Subject> = events.iter().filter_map(subject_of).collect();
    let mut sellers: HashMap<Subject, Vec<Uuid>> = HashMap::new();
    let (mut skus, mut products, mut orders) = (Vec::new(), Vec::new(), Vec::new());
    for subject in &subjects {
        match subject {
            Subject::Sku(sku) => skus.push(sku.clone()),
            Subject::Product(id) => products.push(*id),
            Subject::Order(id) => orders.push(id.to_string()),
        }
    }
    if !skus.is_empty() || !products.is_empty() {
        let claims: Vec<(String, Uuid, Uuid)> = sqlx::query_as(
            "SELECT sku, product_id, seller_id FROM sku_claims \
             WHERE sku = ANY($1) OR product_id = ANY($2)",
        )
        .bind(&skus)
        .bind(&products)
        .fetch_all(&mut *conn)
        .await
        .context("reading who owns the SKUs")?;
        for (sku, product, seller) in claims {
            sellers.insert(Subject::Sku(sku), vec![seller]);
            sellers.insert(Subject::Product(product), vec![seller]);
        }
    }
    if !orders.is_empty() {
        let placements: Vec<StoredEvent> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM events \
             WHERE aggregate_type = 'order' AND aggregate_id = ANY($1) AND sequence = 1"
        ))
        .bind(&orders)
        .fetch_all(&mut *conn)
        .await
        .context("reading the orders' placements")?;
        for placement in placements {
            let OrderEvent::OrderPlaced { lines, .. } = placement
                .decode()
                .context("decoding an order's placement")?
            else {
                continue;
            };
            let mut ids: Vec<Uuid> = lines.iter().map(|line| line.seller_id.0).collect();
            ids.sort();
            ids.dedup();
            let id = placement
                .aggregate_id
                .parse()
                .context("an order id is a UUID")?;
            sellers.insert(Subject::Order(id), ids);
        }
    }
    Ok(sellers)
}

/// What a seller's event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    Sku(String),
    Product(Uuid),
    Order(Uuid),
}

/// What an event is about, for a seller; `None` for events that are never a seller's.
pub fn subject_of(event: &StoredEvent) -> Option<Subject> {
    match event.aggregate_type.as_str() {
        "product" => event.aggregate_id.parse().ok().map(Subject::Product),
        "inventory" => Some(Subject::Sku(event.aggregate_id.clone())),
        "order" => event.aggregate_id.parse().ok().map(Subject::Order),
        "review" => {
            let data = data_of(&event.payload, &event.event_type);
            data.get("product_id")?
                .as_str()?
                .parse()
                .ok()
                .map(Subject::Product)
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

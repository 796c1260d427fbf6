//! The webhooks in the OpenAPI document (3.1's top-level `webhooks`): one entry per event type,
//! whose request body is the delivery's envelope with that type's `data`. The `data` schemas
//! come from the domain's own event types, so the document cannot drift from what is sent.

use commerce_domain::account::AccountEvent;
use commerce_domain::cart::CartEvent;
use commerce_domain::checkout::SagaEvent;
use commerce_domain::inventory::InventoryEvent;
use commerce_domain::order::OrderEvent;
use commerce_domain::payment::PaymentEvent;
use commerce_domain::product::ProductEvent;
use commerce_domain::review::ReviewEvent;
use std::collections::HashMap;

use serde_json::{json, Map, Value};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

use crate::catalogue;

/// The envelope's schema name among the components.
const ENVELOPE: &str = "WebhookDelivery";

/// `(webhooks, component schemas)` for the OpenAPI document.
pub fn openapi() -> (Value, Map<String, Value>) {
    let mut components = Map::new();
    let mut data_of = HashMap::new();
    collect::<ProductEvent>("product", &mut data_of, &mut components);
    collect::<InventoryEvent>("inventory", &mut data_of, &mut components);
    collect::<OrderEvent>("order", &mut data_of, &mut components);
    collect::<ReviewEvent>("review", &mut data_of, &mut components);
    collect::<PaymentEvent>("payment", &mut data_of, &mut components);
    collect::<CartEvent>("cart", &mut data_of, &mut components);
    collect::<AccountEvent>("account", &mut data_of, &mut components);
    collect::<SagaEvent>("checkout_saga", &mut data_of, &mut components);
    components.insert(ENVELOPE.to_owned(), envelope());

    let mut webhooks = Map::new();
    for event_type in catalogue::all() {
        let (data, about) = data_of
            .remove(&event_type.name)
            .unwrap_or_else(|| (json!({ "type": "object" }), String::new()));
        let audience = if event_type.sellers {
            "Admins' webhooks receive it; a seller's, when it is about the seller's products, \
             SKUs or order lines (an order's data then holds only the seller's lines)."
        } else {
            "Only admins' webhooks receive it."
        };
        webhooks.insert(
            event_type.name.clone(),
            json!({ "post": {
                "summary": event_type.name,
                "description": format!("{about}\n\n{audience}").trim().to_owned(),
                "tags": ["webhooks"],
                "parameters": signature_headers(),
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "allOf": [
                        { "$ref": format!("#/components/schemas/{ENVELOPE}") },
                        { "type": "object", "properties": {
                            "type": { "const": event_type.name },
                            "data": data,
                        } },
                    ],
                } } } },
                "responses": {
                    "2XX": { "description": "received: the delivery ends" },
                    "default": { "description": "anything else, or no answer in time: retried with backoff" },
                },
            } }),
        );
    }
    (Value::Object(webhooks), components)
}

/// Each variant's fields of the event enum `E`, by type name, with the variant's doc, and
/// every schema they refer to.
fn collect<E: ToSchema>(
    aggregate_type: &str,
    data_of: &mut HashMap<String, (Value, String)>,
    components: &mut Map<String, Value>,
) {
    let mut referred: Vec<(String, RefOr<Schema>)> = Vec::new();
    E::schemas(&mut referred);
    for (name, schema) in referred {
        components.insert(name, serde_json::to_value(schema).unwrap_or_default());
    }
    let schema = serde_json::to_value(E::schema()).unwrap_or_default();
    let variants = schema["oneOf"].as_array().cloned().unwrap_or_default();
    for variant in variants {
        let about = variant["description"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if let Some(properties) = variant["properties"].as_object() {
            // A variant with fields: `{"<Variant>": {fields}}`.
            for (name, fields) in properties {
                data_of.insert(
                    catalogue::type_name(aggregate_type, name),
                    (fields.clone(), about.clone()),
                );
            }
        } else if let Some(names) = variant["enum"].as_array() {
            // Variants without fields, serialised as their name.
            for name in names.iter().filter_map(Value::as_str) {
                data_of.insert(
                    catalogue::type_name(aggregate_type, name),
                    (
                        json!({ "type": "object", "description": "no fields" }),
                        about.clone(),
                    ),
                );
            }
        }
    }
}

fn envelope() -> Value {
    json!({
        "type": "object",
        "description": "A delivery's body: one event.",
        "required": ["type", "event_id", "position", "occurred_at", "aggregate_type", "aggregate_id", "sequence", "data"],
        "properties": {
            "type": { "type": "string", "description": "`<aggregate type>.<event type>`" },
            "event_id": { "type": "string", "format": "uuid", "description": "the event's id, the same in every delivery of it" },
            "position": { "type": "integer", "format": "int64", "description": "its position in the event store (`from_position` of a replay)" },
            "occurred_at": { "type": "string", "format": "date-time" },
            "aggregate_type": { "type": "string" },
            "aggregate_id": { "type": "string" },
            "sequence": { "type": "integer", "format": "int64", "description": "its place in its aggregate's stream: each aggregate's events arrive in this order" },
            "data": { "description": "the event's fields; personal ones opened, or `forgotten`" },
        },
    })
}

fn signature_headers() -> Value {
    json!([
        { "name": "webhook-id", "in": "header", "required": true, "schema": { "type": "string" },
          "description": "the same for every attempt, retry and replay of this event to this webhook: dedupe by it" },
        { "name": "webhook-timestamp", "in": "header", "required": true, "schema": { "type": "integer" },
          "description": "Unix seconds when this attempt was signed" },
        { "name": "webhook-signature", "in": "header", "required": true, "schema": { "type": "string" },
          "description": "`v1,` + base64 of HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}` keyed by the secret's bytes (after `whsec_`, base64-decoded); during a secret's rotation, two such signatures separated by a space" },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_has_its_fields_documented() {
        let (webhooks, components) = openapi();
        let webhooks = webhooks.as_object().unwrap();
        assert_eq!(webhooks.len(), catalogue::all().len());
        let placed = &webhooks["order.OrderPlaced"]["post"]["requestBody"]["content"]
            ["application/json"]["schema"]["allOf"][1]["properties"]["data"];
        assert!(placed["properties"]["lines"].is_object(), "{placed}");
        let shipped = &webhooks["order.OrderConfirmed"]["post"]["requestBody"]["content"]
            ["application/json"]["schema"]["allOf"][1]["properties"]["data"];
        assert_eq!(shipped["type"], "object");
        assert!(components.contains_key(ENVELOPE));
        assert!(components.contains_key("OrderLine"));
    }
}

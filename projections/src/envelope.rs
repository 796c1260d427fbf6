//! One event as the relay publishes it and a projection receives it.
//!
//! The message body is the event's JSON payload, unchanged; everything else travels in headers:
//!
//! | header | value |
//! |---|---|
//! | `Nats-Msg-Id` | `<aggregate_type>:<aggregate_id>:<sequence>` (JetStream's dedupe key) |
//! | `Commerce-Aggregate-Type`, `Commerce-Aggregate-Id` | the stream the event belongs to |
//! | `Commerce-Sequence` | its sequence within that stream |
//! | `Commerce-Position` | its global position in the event store |
//! | `Commerce-Event-Type`, `Commerce-Event-Version` | what it is |
//! | `Commerce-Recorded-At` | when it was recorded (RFC 3339, microseconds) |
//! | `Commerce-Correlation-Id`, `Commerce-Causation-Id` | from its metadata |
//! | `Commerce-Metadata` | its whole metadata, as compact JSON |
//! | `traceparent`, `tracestate` | W3C trace context of the relay's publish span (or, when the relay does not trace, the metadata's); absent when the event was not traced |
//!
//! A `StoredEvent` is always at its type's current version: built from an `events` row (every
//! `query_as::<_, StoredEvent>`, and `#[sqlx(flatten)]` rows holding one) or from a message, it
//! goes through the domain's upcaster chain ([`commerce_domain::upcast`]), so a projection only
//! ever decodes the current shape and the relay publishes it.
//!
//! Text headers are percent-encoded where a byte is not printable ASCII (and `%` itself), so no
//! value can break the header framing; the JSON header escapes non-ASCII as `\uXXXX`.

use anyhow::Context;
use async_nats::HeaderMap;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use commerce_domain::upcast::{upcast, UpcastError};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::Namespace;

/// JetStream's deduplication header.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// The event's global position.
pub const POSITION: &str = "Commerce-Position";
/// The event's type.
pub const EVENT_TYPE: &str = "Commerce-Event-Type";
/// The version of the event's type.
pub const EVENT_VERSION: &str = "Commerce-Event-Version";
/// The event's sequence within its aggregate.
pub const SEQUENCE: &str = "Commerce-Sequence";
/// The aggregate's type.
pub const AGGREGATE_TYPE: &str = "Commerce-Aggregate-Type";
/// The aggregate's id.
pub const AGGREGATE_ID: &str = "Commerce-Aggregate-Id";
/// The metadata's `correlation_id`.
pub const CORRELATION_ID: &str = "Commerce-Correlation-Id";
/// The metadata's `causation_id`.
pub const CAUSATION_ID: &str = "Commerce-Causation-Id";
/// When the event was recorded.
pub const RECORDED_AT: &str = "Commerce-Recorded-At";
/// The whole metadata, as JSON.
pub const METADATA: &str = "Commerce-Metadata";
/// The W3C trace context of the span that published the event.
pub const TRACEPARENT: &str = commerce_store::trace::TRACEPARENT;
/// The W3C trace state beside [`TRACEPARENT`].
pub const TRACESTATE: &str = commerce_store::trace::TRACESTATE;

/// The columns of `events` a [`StoredEvent`] is read from: `SELECT {COLUMNS} FROM events …`.
pub const COLUMNS: &str =
    "aggregate_type, aggregate_id, sequence, position, event_type, event_version, payload, metadata, recorded_at";

/// An event as stored in the `events` table (without its transaction id), upcast to the
/// current version of its type.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// Its place in its aggregate's stream, from 1.
    pub sequence: i64,
    /// Its global position (handed out at insert, so not commit order).
    pub position: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    /// `correlation_id`, `causation_id`, `actor`, `idempotency_key`, and `traceparent`/`tracestate`
    /// when traced (see `commerce_store::Metadata`).
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
}

/// Reads the columns of the derive it replaces, then upcasts: a row of a version this engine
/// does not know is a decode error naming the event, never a panic.
impl<'r> sqlx::FromRow<'r, PgRow> for StoredEvent {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        let event = Self {
            aggregate_type: row.try_get("aggregate_type")?,
            aggregate_id: row.try_get("aggregate_id")?,
            sequence: row.try_get("sequence")?,
            position: row.try_get("position")?,
            event_type: row.try_get("event_type")?,
            event_version: row.try_get("event_version")?,
            payload: row.try_get("payload")?,
            metadata: row.try_get("metadata")?,
            recorded_at: row.try_get("recorded_at")?,
        };
        event
            .upcast()
            .map_err(|error| sqlx::Error::Decode(Box::new(error)))
    }
}

/// A message ready to publish.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub subject: String,
    pub headers: HeaderMap,
    pub payload: Bytes,
}

impl StoredEvent {
    /// The same event at its type's current version (itself when it already is).
    pub fn upcast(mut self) -> Result<Self, UpcastError> {
        let payload = std::mem::take(&mut self.payload);
        let (version, payload) = upcast(
            &self.aggregate_type,
            &self.event_type,
            &self.event_version,
            payload,
        )?;
        self.event_version = version;
        self.payload = payload;
        Ok(self)
    }

    /// The payload as the domain's event type, read in place (no copy of the JSON).
    pub fn decode<'a, E: serde::Deserialize<'a>>(&'a self) -> Result<E, serde_json::Error> {
        E::deserialize(&self.payload)
    }

    /// `<aggregate_type>:<aggregate_id>:<sequence>`: the same event always gets the same id.
    pub fn message_id(&self) -> String {
        format!(
            "{}:{}:{}",
            encode_text(&self.aggregate_type),
            encode_text(&self.aggregate_id),
            self.sequence
        )
    }

    /// The message the relay publishes for this event.
    pub fn to_message(&self, namespace: &Namespace) -> anyhow::Result<OutgoingMessage> {
        let mut headers = HeaderMap::new();
        headers.insert(MSG_ID, self.message_id());
        headers.insert(AGGREGATE_TYPE, encode_text(&self.aggregate_type));
        headers.insert(AGGREGATE_ID, encode_text(&self.aggregate_id));
        headers.insert(SEQUENCE, self.sequence.to_string());
        headers.insert(POSITION, self.position.to_string());
        headers.insert(EVENT_TYPE, encode_text(&self.event_type));
        headers.insert(EVENT_VERSION, encode_text(&self.event_version));
        headers.insert(
            RECORDED_AT,
            self.recorded_at
                .to_rfc3339_opts(SecondsFormat::Micros, true),
        );
        for (header, field) in [
            (CORRELATION_ID, "correlation_id"),
            (CAUSATION_ID, "causation_id"),
        ] {
            if let Some(id) = self.metadata.get(field).and_then(Value::as_str) {
                headers.insert(header, encode_text(id));
            }
        }
        for header in [TRACEPARENT, TRACESTATE] {
            if let Some(value) = self.metadata.get(header).and_then(Value::as_str) {
                headers.insert(header, encode_text(value));
            }
        }
        let metadata = serde_json::to_string(&self.metadata).context("serialising metadata")?;
        headers.insert(METADATA, ascii_json(&metadata));
        let payload = serde_json::to_vec(&self.payload).context("serialising the payload")?;
        Ok(OutgoingMessage {
            subject: namespace.event_subject(&self.aggregate_type, &self.aggregate_id),
            headers,
            payload: Bytes::from(payload),
        })
    }

    /// The trace context a message carries in its `traceparent` (and `tracestate`) header, if
    /// tracing is on and it carries one.
    pub fn trace_context(message: &async_nats::Message) -> Option<commerce_store::trace::Context> {
        if !commerce_store::trace::enabled() {
            return None;
        }
        let headers = message.headers.as_ref()?;
        let traceparent = headers.get(TRACEPARENT)?.as_str();
        let tracestate = headers.get(TRACESTATE).map(|value| value.as_str());
        commerce_store::trace::TraceFields::context(traceparent, tracestate)
    }

    /// Reads an event back from a message the relay published.
    pub fn from_message(message: &async_nats::Message) -> anyhow::Result<Self> {
        let headers = message
            .headers
            .as_ref()
            .context("the message has no headers")?;
        let text = |name: &str| -> anyhow::Result<String> {
            let value = headers
                .get(name)
                .with_context(|| format!("the message has no `{name}` header"))?;
            decode_text(value.as_str()).with_context(|| format!("decoding `{name}`"))
        };
        let number = |name: &str| -> anyhow::Result<i64> {
            text(name)?
                .parse()
                .with_context(|| format!("`{name}` is not a number"))
        };
        let metadata = match headers.get(METADATA) {
            Some(json) => serde_json::from_str(json.as_str()).context("parsing the metadata")?,
            None => {
                let mut metadata = serde_json::Map::new();
                for (header, field) in [
                    (CORRELATION_ID, "correlation_id"),
                    (CAUSATION_ID, "causation_id"),
                ] {
                    if headers.get(header).is_some() {
                        metadata.insert(field.to_owned(), Value::String(text(header)?));
                    }
                }
                Value::Object(metadata)
            }
        };
        let recorded_at = DateTime::parse_from_rfc3339(&text(RECORDED_AT)?)
            .context("parsing the recording time")?
            .with_timezone(&Utc);
        // A message published before an upgrade may carry an older version.
        let event = Self {
            aggregate_type: text(AGGREGATE_TYPE)?,
            aggregate_id: text(AGGREGATE_ID)?,
            sequence: number(SEQUENCE)?,
            position: number(POSITION)?,
            event_type: text(EVENT_TYPE)?,
            event_version: text(EVENT_VERSION)?,
            payload: serde_json::from_slice(&message.payload).context("parsing the payload")?,
            metadata,
            recorded_at,
        };
        Ok(event.upcast()?)
    }
}

/// Percent-encodes every byte that is not printable ASCII, and `%`.
fn encode_text(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_graphic() && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Reverses [`encode_text`].
fn decode_text(text: &str) -> anyhow::Result<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .context("a `%` is not followed by two hex digits")?;
            decoded.push(u8::from_str_radix(hex, 16).context("a `%` escape is not hex")?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).context("the decoded text is not UTF-8")
}

/// Escapes every non-ASCII character of a JSON text as `\uXXXX` (they only occur in strings).
fn ascii_json(json: &str) -> String {
    let mut ascii = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            ascii.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                ascii.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    ascii
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> StoredEvent {
        StoredEvent {
            aggregate_type: "inventory".into(),
            aggregate_id: "SKU 1/é%".into(),
            sequence: 3,
            position: 42,
            event_type: "StockReceived".into(),
            event_version: "1.0".into(),
            payload: json!({"sku": "SKU 1/é%", "quantity": 5}),
            metadata: json!({"correlation_id": "c", "causation_id": "d", "actor": "ü😀"}),
            recorded_at: DateTime::parse_from_rfc3339("2026-11-22T10:00:00.123456Z")
                .unwrap()
                .with_timezone(&Utc),
        }
    }

    #[test]
    fn an_event_survives_the_round_trip() {
        let namespace = Namespace::parse("test").unwrap();
        let original = event();
        let outgoing = original.to_message(&namespace).unwrap();
        assert_eq!(outgoing.subject, "test.events.inventory.SKU%201/%C3%A9%25");
        for (_, values) in outgoing.headers.iter() {
            for value in values {
                assert!(value.as_str().bytes().all(|b| b.is_ascii_graphic()));
            }
        }
        let message = async_nats::Message {
            subject: outgoing.subject.into(),
            reply: None,
            payload: outgoing.payload,
            headers: Some(outgoing.headers),
            status: None,
            description: None,
            length: 0,
        };
        assert_eq!(StoredEvent::from_message(&message).unwrap(), original);
    }

    #[test]
    fn a_traced_event_carries_its_traceparent_in_a_header() {
        let namespace = Namespace::parse("test").unwrap();
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut traced = event();
        traced.metadata["traceparent"] = json!(parent);
        let outgoing = traced.to_message(&namespace).unwrap();
        assert_eq!(outgoing.headers.get(TRACEPARENT).unwrap().as_str(), parent);
        assert!(outgoing.headers.get(TRACESTATE).is_none());
        assert!(event()
            .to_message(&namespace)
            .unwrap()
            .headers
            .get(TRACEPARENT)
            .is_none());
    }

    #[test]
    fn the_message_id_names_the_event() {
        assert_eq!(event().message_id(), "inventory:SKU%201/%C3%A9%25:3");
    }
}

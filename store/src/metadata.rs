//! The metadata every event carries.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who caused an event and in answer to what. Stored as the event's `metadata` column and carried
/// to NATS headers by the relay.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// The request (or saga) this event belongs to; flows through every event it causes.
    pub correlation_id: Uuid,
    /// The command or event that directly caused this one.
    pub causation_id: Uuid,
    /// The account that sent the command, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Uuid>,
    /// The client's `Idempotency-Key`, if it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The W3C `traceparent` of the span that appended the event (see [`crate::trace`]): absent
    /// when tracing is off. Filled in by the store from the current span when left `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The W3C `tracestate` beside `traceparent`, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

impl Metadata {
    /// Metadata for a command that starts its own correlation.
    pub fn new(actor: Option<Uuid>) -> Self {
        let id = Uuid::now_v7();
        Self {
            correlation_id: id,
            causation_id: id,
            actor,
            idempotency_key: None,
            traceparent: None,
            tracestate: None,
        }
    }

    /// As stored: JSON, with the current span's trace context added when tracing is on and the
    /// metadata names none.
    pub(crate) fn to_stored(&self) -> anyhow::Result<serde_json::Value> {
        let mut value = serde_json::to_value(self).context("serialising metadata")?;
        if self.traceparent.is_none() {
            crate::trace::stamp(&mut value);
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_trace_context_survives_the_round_trip() {
        let metadata = Metadata {
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            tracestate: Some("vendor=1".into()),
            ..Metadata::new(None)
        };
        let stored = metadata.to_stored().unwrap();
        assert_eq!(
            stored["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(stored["tracestate"], "vendor=1");
        assert_eq!(
            serde_json::from_value::<Metadata>(stored).unwrap(),
            metadata
        );
    }

    #[test]
    fn no_trace_context_is_stored_as_none() {
        let metadata = Metadata::new(None);
        let stored = metadata.to_stored().unwrap();
        let object = stored.as_object().unwrap();
        assert!(!object.contains_key("traceparent"));
        assert!(!object.contains_key("tracestate"));
        assert_eq!(
            serde_json::from_value::<Metadata>(stored).unwrap(),
            metadata
        );
    }

    #[test]
    fn metadata_stored_before_traces_still_decodes() {
        let id = Uuid::now_v7();
        let old = json!({ "correlation_id": id, "causation_id": id, "actor": null });
        let metadata: Metadata = serde_json::from_value(old).unwrap();
        assert_eq!(metadata.traceparent, None);
        assert_eq!(metadata.tracestate, None);
        assert_eq!(metadata.correlation_id, id);
    }
}

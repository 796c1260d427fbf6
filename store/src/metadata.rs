//! The metadata every event carries.

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
        }
    }
}

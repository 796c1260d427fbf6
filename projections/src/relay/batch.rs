//! Reading events in commit order and publishing them: the relay's batch, shared with an
//! operator's republish ([`crate::republish`]) so that both put exactly the same messages, with
//! the same `Nats-Msg-Id`s, on the stream.

use anyhow::Context;
use async_nats::jetstream;
use async_nats::jetstream::context::PublishErrorKind;
use sqlx::PgExecutor;

use crate::envelope::{TRACEPARENT, TRACESTATE};
use crate::{Namespace, StoredEvent};

/// An event with the id of the transaction that wrote it (xid8, as a number).
#[derive(sqlx::FromRow)]
pub(crate) struct Committed {
    pub tx_id: i64,
    #[sqlx(flatten)]
    pub event: StoredEvent,
}

/// The commit horizon: every transaction with a smaller id has committed or aborted.
pub(crate) async fn horizon(executor: impl PgExecutor<'_>) -> anyhow::Result<i64> {
    sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        .fetch_one(executor)
        .await
        .context("reading the commit horizon")
}

/// Up to `limit` events of transactions below `horizon`, after `(tx_id, position)` in commit
/// order, at or above `from_position`: an event whose position was handed out before a later
/// one committed is never skipped.
pub(crate) async fn read_committed(
    executor: impl PgExecutor<'_>,
    horizon: i64,
    after: (i64, i64),
    from_position: i64,
    limit: i64,
) -> anyhow::Result<Vec<Committed>> {
    // ORDER BY names the columns qualified: bare, it would sort by the bigint alias and miss
    // the (tx_id, position) index, scanning and sorting the whole tail of the store per batch.
    sqlx::query_as(
        "SELECT tx_id::text::bigint AS tx_id, aggregate_type, aggregate_id, sequence, position, \
                event_type, event_version, payload, metadata, recorded_at \
         FROM events \
         WHERE tx_id < $1::text::xid8 AND (tx_id, position) > ($2::text::xid8, $3) \
           AND position >= $5 \
         ORDER BY events.tx_id, events.position \
         LIMIT $4",
    )
    .bind(horizon)
    .bind(after.0)
    .bind(after.1)
    .bind(limit)
    .bind(from_position)
    .fetch_all(executor)
    .await
    .context("reading events to publish")
}

/// What publishing a batch came to.
pub(crate) struct Sent<'a> {
    /// The highest stream sequence acknowledged (0 when none was).
    pub stream_sequence: u64,
    /// A duplicate was acknowledged without its sequence.
    pub unknown_sequence: bool,
    /// Events larger than the bus's `max_payload`, with the reason: no attempt can publish them.
    pub too_large: Vec<(&'a StoredEvent, String)>,
}

/// Publishes the events of `rows` pipelined, each as [`StoredEvent::to_message`] builds it,
/// and waits for JetStream to acknowledge every one.
pub(crate) async fn publish<'a>(
    jetstream: &jetstream::Context,
    namespace: &Namespace,
    rows: &'a [Committed],
) -> anyhow::Result<Sent<'a>> {
    let mut acks = Vec::with_capacity(rows.len());
    let mut too_large = Vec::new();
    // One `publish` span per traced event, a child of the span that appended it, ended once
    // JetStream has acknowledged the batch.
    let mut spans = Vec::new();
    for Committed { event, .. } in rows {
        let mut message = event.to_message(namespace)?;
        if let Some(span) = publish_span(event) {
            if let Some(fields) = commerce_store::trace::of_span(&span) {
                message.headers.insert(TRACEPARENT, fields.traceparent);
                if let Some(state) = fields.tracestate {
                    message.headers.insert(TRACESTATE, state);
                }
            }
            spans.push(span);
        }
        let sent = jetstream
            .publish_with_headers(message.subject, message.headers, message.payload)
            .await;
        match sent {
            Ok(ack) => acks.push(ack),
            // The client checks the size against the server's `max_payload` before sending: no
            // later attempt can succeed.
            Err(error) if error.kind() == PublishErrorKind::MaxPayloadExceeded => {
                too_large.push((event, error.to_string()));
            }
            Err(error) => return Err(error).context("publishing an event"),
        }
    }
    let mut stream_sequence = 0;
    let mut unknown_sequence = false;
    for ack in acks {
        let ack = ack
            .await
            .context("waiting for JetStream to store an event")?;
        unknown_sequence |= ack.sequence == 0;
        stream_sequence = stream_sequence.max(ack.sequence);
    }
    drop(spans);
    Ok(Sent {
        stream_sequence,
        unknown_sequence,
        too_large,
    })
}

/// The span publishing `event`, a child of the context its metadata names: only when tracing is
/// on and the event was traced.
fn publish_span(event: &StoredEvent) -> Option<tracing::Span> {
    if !commerce_store::trace::enabled() {
        return None;
    }
    let parent = commerce_store::trace::remote_context(&event.metadata)?;
    let span = tracing::info_span!(
        "relay_publish",
        otel.kind = "producer",
        aggregate = %event.aggregate_type,
        aggregate_id = %event.aggregate_id,
        event_type = %event.event_type,
        position = event.position,
    );
    commerce_store::trace::set_parent(&span, parent);
    Some(span)
}

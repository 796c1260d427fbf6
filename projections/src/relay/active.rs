//! The relay while it holds the namespace's lock: read a batch in commit order, publish it,
//! checkpoint it.

use anyhow::Context;
use async_nats::jetstream;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::batch;
use super::checkpoint::{self, Checkpoint};
use super::RelayStatus;
use crate::{Namespace, StoredEvent};

/// What one [`ActiveRelay::publish_next`] published; not yet checkpointed.
#[derive(Debug, Clone)]
pub struct Published {
    /// How many events were read and handled: published, or parked (see `parked`).
    pub events: usize,
    /// Of those, how many could not be published and were parked in `relay_parked_events`.
    pub parked: usize,
    /// The batch was full: more events may be publishable right away.
    pub full: bool,
    /// When the oldest event still waiting behind the horizon (an open older transaction) was
    /// recorded, if one is; the relay looks again soon instead of waiting for a notification.
    pub waiting_since: Option<DateTime<Utc>>,
    /// When the first event of this batch was recorded.
    pub first_recorded_at: Option<DateTime<Utc>>,
    /// The checkpoint once this batch is stored.
    pub checkpoint: Checkpoint,
}

/// The active relay of a namespace: it holds the namespace's advisory lock on its own
/// connection, and runs every query on that connection, so it can only read and checkpoint while
/// it still holds the lock. Dropping it closes the connection and frees the lock.
pub struct ActiveRelay {
    pub(super) conn: PgConnection,
    pub(super) jetstream: jetstream::Context,
    pub(super) namespace: Namespace,
    pub(super) batch_size: usize,
    pub(super) stream_max_age: std::time::Duration,
    pub(super) stream_replicas: usize,
    pub(super) checkpoint: Checkpoint,
    pub(super) status: RelayStatus,
    pub(super) lock_key: i64,
}

impl ActiveRelay {
    /// Loads the checkpoint.
    pub(super) async fn start(mut self) -> anyhow::Result<Self> {
        self.checkpoint = checkpoint::load(&mut self.conn, &self.namespace).await?;
        Ok(self)
    }

    /// Makes sure the checkpoint speaks of the stream that exists now. When the stream was
    /// deleted and created again (another identity) or lost messages the relay had published
    /// (its last sequence is below the checkpoint's, e.g. an unsynced tail lost in a crash),
    /// the checkpoint is reset and everything is published again from the start of the store:
    /// there is no telling which events the stream still holds. JetStream drops what is still
    /// in its duplicate window (only when it is the same stream); projections skip what they
    /// already applied. A checkpoint stored before identities were recorded adopts the current
    /// stream when that stream holds at least as many messages as it says were published.
    ///
    /// Messages dropped by age (the stream's `max_age`) leave its last sequence as it was: they
    /// do not make a shortened stream. A retention or replicas that are not the relay's
    /// (another engine's relay, a stream recreated by a projection worker) are set again.
    async fn check_stream(&mut self) -> anyhow::Result<()> {
        let info = crate::stream::look_up_info(&self.jetstream, &self.namespace).await?;
        if info.config.max_age != self.stream_max_age
            || info.config.num_replicas != self.stream_replicas
        {
            tracing::info!(
                namespace = %self.namespace,
                from_seconds = info.config.max_age.as_secs(),
                to_seconds = self.stream_max_age.as_secs(),
                from_replicas = info.config.num_replicas,
                to_replicas = self.stream_replicas,
                "setting the stream's retention and replicas (COMMERCE_STREAM_MAX_AGE, COMMERCE_STREAM_REPLICAS)"
            );
            crate::stream::apply(
                &self.jetstream,
                &self.namespace,
                self.stream_max_age,
                self.stream_replicas,
            )
            .await?;
        }
        let identity = crate::stream::identity(&info)?;
        let state = info.state;
        let shortened = state.last_sequence < self.checkpoint.stream_sequence;
        match self.checkpoint.stream_created {
            Some(known) if known == identity && !shortened => return Ok(()),
            None if !shortened => {
                // Stored at once (when there is a checkpoint at all): an idle relay might not
                // store one for a long time, and until then projections trust none.
                let stored = self.checkpoint != Checkpoint::default();
                self.checkpoint.stream_created = Some(identity);
                if stored {
                    checkpoint::store(&mut self.conn, &self.namespace, &self.checkpoint).await?;
                }
                return Ok(());
            }
            _ => {}
        }
        tracing::warn!(
            namespace = %self.namespace,
            stream_created = %identity,
            checkpoint_stream_created = ?self.checkpoint.stream_created,
            stream_last_sequence = state.last_sequence,
            checkpoint_stream_sequence = self.checkpoint.stream_sequence,
            "the stream was recreated or lost messages the relay had published: republishing everything"
        );
        metrics::counter!("commerce_relay_stream_resets_total", "namespace" => self.namespace.to_string())
            .increment(1);
        checkpoint::reset(&mut self.conn, &self.namespace).await?;
        self.checkpoint = Checkpoint {
            stream_created: Some(identity),
            ..Checkpoint::default()
        };
        Ok(())
    }

    /// The last stored checkpoint.
    pub fn checkpoint(&self) -> Checkpoint {
        self.checkpoint
    }

    /// Publishes the next batch of events in commit order and waits for JetStream to
    /// acknowledge every one of them. Does **not** store the checkpoint: call
    /// [`store_checkpoint`](Self::store_checkpoint) with the result. A relay that dies in
    /// between republishes the batch, which JetStream deduplicates by `Nats-Msg-Id`.
    ///
    /// Only events of transactions older than every running transaction are read
    /// (`tx_id < pg_snapshot_xmin(pg_current_snapshot())`), ordered by `(tx_id, position)`: an
    /// event whose position was handed out before a later one committed is never skipped.
    ///
    /// Every batch first checks that the stream is still the one the checkpoint speaks of (see
    /// `check_stream`), so a stream deleted, recreated or shortened behind the relay's back
    /// is republished from the start. An event too large for the bus (NATS `max_payload`) is
    /// parked in `relay_parked_events` with the reason and skipped, so that it cannot stall
    /// every later event.
    #[tracing::instrument(skip_all, fields(namespace = %self.namespace, events), err)]
    pub async fn publish_next(&mut self) -> anyhow::Result<Published> {
        self.check_stream().await?;
        let horizon = batch::horizon(&mut self.conn).await?;
        let limit = i64::try_from(self.batch_size).unwrap_or(i64::MAX);
        let after = (self.checkpoint.tx_id, self.checkpoint.position);
        let rows = batch::read_committed(&mut self.conn, horizon, after, 0, limit).await?;
        tracing::Span::current().record("events", rows.len());

        let sent = batch::publish(&self.jetstream, &self.namespace, &rows).await?;
        let mut stream_sequence = self.checkpoint.stream_sequence.max(sent.stream_sequence);
        if sent.unknown_sequence {
            // A duplicate acknowledged without its sequence: the stream's end bounds it.
            let mut stream = self
                .jetstream
                .get_stream(self.namespace.stream_name())
                .await
                .context("looking up the stream")?;
            let info = stream.info().await.context("reading the stream's state")?;
            stream_sequence = stream_sequence.max(info.state.last_sequence);
        }
        for (event, reason) in &sent.too_large {
            self.park(event, reason).await?;
        }

        let full = rows.len() >= self.batch_size;
        let mut next = self.checkpoint;
        next.stream_sequence = stream_sequence;
        if let Some(last) = rows.last() {
            next.tx_id = last.tx_id;
            next.position = last.event.position;
        }
        next.published_position = rows
            .iter()
            .map(|row| row.event.position)
            .fold(next.published_position, i64::max);
        // A full batch may have stopped inside a transaction: only the ones before it are
        // complete. Otherwise every transaction below the horizon has been published.
        let batch_horizon = match rows.last() {
            Some(last) if full => last.tx_id,
            _ => horizon,
        };
        next.horizon = next.horizon.max(batch_horizon);

        let waiting_since = if full {
            None
        } else {
            sqlx::query_scalar(
                "SELECT recorded_at FROM events WHERE (tx_id, position) > ($1::text::xid8, $2) \
                 ORDER BY tx_id, position LIMIT 1",
            )
            .bind(next.tx_id)
            .bind(next.position)
            .fetch_optional(&mut self.conn)
            .await
            .context("looking for events behind the horizon")?
        };

        Ok(Published {
            events: rows.len(),
            parked: sent.too_large.len(),
            full,
            waiting_since,
            first_recorded_at: rows.first().map(|row| row.event.recorded_at),
            checkpoint: next,
        })
    }

    /// Stores the checkpoint after `published` and records the metrics. A batch without events
    /// is only stored while the horizon has not yet passed the last published transaction:
    /// projections need that once, and storing every move of an idle horizon would only churn.
    pub async fn store_checkpoint(&mut self, published: &Published) -> anyhow::Result<()> {
        let next = &published.checkpoint;
        let uncovered = self.checkpoint.horizon <= self.checkpoint.tx_id
            && next.horizon > self.checkpoint.horizon;
        if published.events > 0 || uncovered {
            checkpoint::store(&mut self.conn, &self.namespace, &published.checkpoint).await?;
            self.checkpoint = published.checkpoint;
        }
        let events = u64::try_from(published.events - published.parked).unwrap_or_default();
        self.status.add_published(events);
        let namespace = self.namespace.to_string();
        metrics::counter!("commerce_relay_events_published_total", "namespace" => namespace.clone())
            .increment(events);
        let oldest_unpublished = if published.full {
            published.first_recorded_at
        } else {
            published.waiting_since
        };
        let lag = oldest_unpublished.map_or(0.0, |at| {
            (Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0
        });
        metrics::gauge!("commerce_relay_lag_seconds", "namespace" => namespace).set(lag);
        Ok(())
    }

    /// Records an event that cannot be published, with why, for operators; parking it again
    /// (a batch republished after a crash) changes nothing.
    async fn park(&mut self, event: &StoredEvent, reason: &str) -> anyhow::Result<()> {
        tracing::error!(
            namespace = %self.namespace,
            aggregate_type = %event.aggregate_type,
            aggregate_id = %event.aggregate_id,
            sequence = event.sequence,
            position = event.position,
            reason,
            "an event cannot be published: parked in relay_parked_events"
        );
        sqlx::query(
            "INSERT INTO relay_parked_events \
               (namespace, position, aggregate_type, aggregate_id, sequence, event_type, reason) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (namespace, position) DO NOTHING",
        )
        .bind(self.namespace.as_str())
        .bind(event.position)
        .bind(&event.aggregate_type)
        .bind(&event.aggregate_id)
        .bind(event.sequence)
        .bind(&event.event_type)
        .bind(reason)
        .execute(&mut self.conn)
        .await
        .context("parking an event the relay cannot publish")?;
        metrics::counter!("commerce_relay_parked_events_total", "namespace" => self.namespace.to_string())
            .increment(1);
        Ok(())
    }

    /// Frees the lock (dropping the relay frees it too, when its connection closes).
    pub async fn release(mut self) -> anyhow::Result<()> {
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(self.lock_key)
            .execute(&mut self.conn)
            .await
            .context("releasing the relay lock")?;
        Ok(())
    }
}

impl Drop for ActiveRelay {
    fn drop(&mut self) {
        self.status.set_active(&self.namespace, false);
    }
}

//! The delivery worker: claims due deliveries, sends each signed, records every attempt and
//! decides what comes next.
//!
//! - **Claims** are leases (`leased_until`), taken with `FOR UPDATE SKIP LOCKED`, so several
//!   workers (in one process or many) share the work and a crashed worker's deliveries come
//!   back when its lease ends: at-least-once. A worker's outcome is written only while the
//!   delivery is still its own (the attempt number it claimed), so a worker that lost its
//!   lease never writes again.
//! - **Order**: a delivery is claimed only when no earlier delivery of the same webhook and
//!   aggregate is pending, so each aggregate's events reach a webhook in order.
//! - **Retries** follow [`Backoff`]; past the retry window a delivery is `failed`.
//! - **Circuit breaker** per webhook (as Saleor's): after [`Breaker::failures_to_open`]
//!   consecutive failed attempts the circuit opens and nothing is sent for
//!   [`Breaker::open_for`]; then it is half-open: only the webhook's oldest pending delivery is
//!   tried, as a probe; a success closes it, a failure opens it again. One dead receiver
//!   costs the others nothing but that probe.
//! - **The request**: `POST` with `webhook-id`, `webhook-timestamp` and `webhook-signature`
//!   (see [`crate::signature`]); no redirects; a timeout per attempt; the response read up to
//!   [`RESPONSE_LIMIT`] bytes; the host checked again at connection time
//!   ([`crate::address::GuardedResolver`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use commerce_projections::StoredEvent;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::address;
use crate::backoff::{Backoff, Next};
use crate::payload;
use crate::signature::signature_header;
use crate::subscription::{self, Webhook};

/// The most of a response read.
pub const RESPONSE_LIMIT: usize = 64 * 1024;
/// The most of a response kept in the delivery log.
pub const EXCERPT_CHARS: usize = 512;

/// When a webhook's circuit opens and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Breaker {
    pub failures_to_open: i32,
    pub open_for: Duration,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            failures_to_open: 5,
            open_for: Duration::from_secs(30),
        }
    }
}

/// How deliveries are made.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Accept receivers on loopback and private addresses (`COMMERCE_WEBHOOK_ALLOW_PRIVATE`).
    pub allow_private: bool,
    pub backoff: Backoff,
    pub breaker: Breaker,
    /// The longest an attempt may take, connection to last byte read.
    pub attempt_timeout: Duration,
    /// Attempts in flight at once in this process.
    pub concurrency: usize,
    /// How often to look for due deliveries.
    pub poll: Duration,
    /// How long a finished delivery (delivered, failed or cancelled) stays in the log, with its
    /// attempts.
    pub log_retention: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            allow_private: false,
            backoff: Backoff::default(),
            breaker: Breaker::default(),
            attempt_timeout: Duration::from_secs(10),
            concurrency: 16,
            poll: Duration::from_millis(250),
            log_retention: Duration::from_secs(30 * 24 * 60 * 60),
        }
    }
}

/// Attempts in flight at once to one webhook (of [`DeliveryConfig::concurrency`] in all), so
/// that a slow receiver cannot take every slot.
const PER_WEBHOOK_IN_FLIGHT: i64 = 4;

/// How often the log is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Deliveries deleted per statement when pruning, so that no transaction runs long.
const PRUNE_BATCH: i64 = 1000;

impl DeliveryConfig {
    /// A claim outlives the slowest attempt, with room to record it; a crashed worker's
    /// deliveries come back this long after they were claimed. Should recording take longer,
    /// the delivery is sent again (the same `webhook-id`) and only one outcome is recorded.
    fn lease(&self) -> Duration {
        self.attempt_timeout + Duration::from_secs(5)
    }
}

/// A claimed delivery.
#[derive(Debug, sqlx::FromRow)]
struct Claimed {
    delivery_id: i64,
    webhook_id: Uuid,
    message_id: String,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    /// This attempt's number: the fence of everything the worker writes about it.
    attempts: i32,
    /// Attempts made since its retry window opened, this one included.
    attempts_in_window: i32,
    window_opened_at: DateTime<Utc>,
}

/// Delivers until cancelled.
pub async fn run(
    pool: PgPool,
    config: DeliveryConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // A proxy would resolve the receiver's name itself, past the guarded resolver.
        .no_proxy()
        .timeout(config.attempt_timeout)
        .dns_resolver(address::resolver(config.allow_private))
        .user_agent(concat!("commerce-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the webhook client")?;
    let deliverer = Arc::new(Deliverer {
        pool,
        client,
        config,
    });
    let mut in_flight = JoinSet::new();
    let mut pruned_at: Option<Instant> = None;
    loop {
        let prune_every = PRUNE_EVERY.min(deliverer.config.log_retention);
        if pruned_at.is_none_or(|at| at.elapsed() >= prune_every) {
            pruned_at = Some(Instant::now());
            if let Err(error) = prune(&deliverer.pool, deliverer.config.log_retention).await {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "pruning the webhook delivery log failed"
                );
            }
        }
        while in_flight.try_join_next().is_some() {}
        let free = deliverer.config.concurrency.saturating_sub(in_flight.len());
        let mut claimed = 0;
        if free > 0 {
            match deliverer.claim(free).await {
                Ok(deliveries) => {
                    claimed = deliveries.len();
                    for delivery in deliveries {
                        let deliverer = deliverer.clone();
                        in_flight.spawn(async move { deliverer.attempt(delivery).await });
                    }
                }
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "claiming webhook deliveries failed"
                    )
                }
            }
        }
        if claimed > 0 && claimed == free {
            // More may be due: look again as soon as a slot frees.
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = in_flight.join_next() => continue,
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(deliverer.config.poll) => {}
        }
    }
    // Attempts in flight finish (each is bounded by its timeout); an interrupted one would be
    // sent again after its lease anyway.
    while in_flight.join_next().await.is_some() {}
    Ok(())
}

/// Deletes the deliveries that finished longer than `retention` ago (their attempts go with
/// them), and the webhooks deleted as long ago that have none left.
pub async fn prune(pool: &PgPool, retention: Duration) -> anyhow::Result<u64> {
    let mut deleted = 0;
    loop {
        let batch = sqlx::query(
            "DELETE FROM webhook_deliveries WHERE delivery_id IN ( \
                 SELECT delivery_id FROM webhook_deliveries \
                 WHERE state <> 'pending' AND finished_at < now() - $1 LIMIT $2)",
        )
        .bind(interval(retention))
        .bind(PRUNE_BATCH)
        .execute(pool)
        .await
        .context("pruning webhook deliveries")?
        .rows_affected();
        deleted += batch;
        if batch < PRUNE_BATCH as u64 {
            break;
        }
    }
    // A fan-out batch that read a webhook just before it was deleted may have enqueued
    // after the deletion cancelled its deliveries.
    sqlx::query(
        "UPDATE webhook_deliveries d SET state = 'cancelled', finished_at = now() \
         FROM webhooks w WHERE w.webhook_id = d.webhook_id AND w.deleted_at IS NOT NULL \
         AND d.state = 'pending'",
    )
    .execute(pool)
    .await
    .context("cancelling the deliveries of deleted webhooks")?;
    sqlx::query(
        "DELETE FROM webhooks w WHERE deleted_at < now() - $1 \
         AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.webhook_id = w.webhook_id)",
    )
    .bind(interval(retention))
    .execute(pool)
    .await
    .context("pruning deleted webhooks")?;
    Ok(deleted)
}

struct Deliverer {
    pool: PgPool,
    client: reqwest::Client,
    config: DeliveryConfig,
}

/// What a receiver did with an attempt.
struct Outcome {
    status: Option<u16>,
    error: Option<String>,
    excerpt: Option<String>,
    latency: Duration,
    /// The engine failed before sending: not the receiver's failure.
    unprepared: bool,
}

impl Outcome {
    fn unprepared(error: &anyhow::Error) -> Self {
        tracing::warn!(
            error = format!("{error:#}"),
            "a webhook delivery could not be prepared"
        );
        Self {
            status: None,
            error: Some("the engine could not prepare this delivery; it is retried".to_owned()),
            excerpt: None,
            latency: Duration::ZERO,
            unprepared: true,
        }
    }

    fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

impl Deliverer {
    async fn claim(&self, limit: usize) -> anyhow::Result<Vec<Claimed>> {
        sqlx::query_as(
            "WITH due AS ( \
                SELECT d.delivery_id FROM webhook_deliveries d \
                JOIN webhooks w ON w.webhook_id = d.webhook_id \
                WHERE d.state = 'pending' AND d.next_attempt_at <= now() \
                  AND (d.leased_until IS NULL OR d.leased_until < now()) \
                  AND w.deleted_at IS NULL \
                  AND (w.circuit_open_until IS NULL OR w.circuit_open_until <= now()) \
                  AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e \
                      WHERE e.webhook_id = d.webhook_id AND e.aggregate_type = d.aggregate_type \
                        AND e.aggregate_id = d.aggregate_id AND e.state = 'pending' \
                        AND e.delivery_id < d.delivery_id) \
                  AND (w.consecutive_failures < $2 OR d.delivery_id = (SELECT min(x.delivery_id) \
                      FROM webhook_deliveries x WHERE x.webhook_id = d.webhook_id \
                        AND x.state = 'pending' AND x.next_attempt_at <= now())) \
                  AND (SELECT count(*) FROM webhook_deliveries y WHERE y.webhook_id = d.webhook_id \
                        AND y.state = 'pending' AND y.leased_until >= now()) < $4 \
                ORDER BY d.next_attempt_at, d.delivery_id LIMIT $1 \
                FOR UPDATE OF d SKIP LOCKED) \
             UPDATE webhook_deliveries d SET leased_until = now() + $3, attempts = d.attempts + 1 \
             FROM due WHERE d.delivery_id = due.delivery_id \
             RETURNING d.delivery_id, d.webhook_id, d.message_id, d.aggregate_type, d.aggregate_id, \
                       d.sequence, d.event_type, d.attempts, d.attempts - d.attempts_before_window AS attempts_in_window, \
                       d.window_opened_at",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(self.config.breaker.failures_to_open)
        .bind(interval(self.config.lease()))
        .bind(PER_WEBHOOK_IN_FLIGHT)
        .fetch_all(&self.pool)
        .await
        .context("claiming webhook deliveries")
    }

    /// One attempt of one delivery, recorded, traced as a `webhook_delivery` span continuing
    /// the trace of the event it sends. When the delivery cannot even be prepared (the event
    /// does not read, a key is missing), that is recorded as a failed attempt too, so that
    /// backoff and the retry window apply; it does not count against the receiver's circuit.
    async fn attempt(&self, delivery: Claimed) {
        let id = delivery.delivery_id;
        let span = tracing::info_span!(
            "webhook_delivery",
            otel.kind = "producer",
            webhook_id = %delivery.webhook_id,
            delivery_id = id,
            attempt = delivery.attempts,
            event_type = %delivery.event_type,
            status = tracing::field::Empty,
        );
        let outcome = match self.prepare(&delivery).await {
            Ok((webhook, event)) => {
                commerce_store::trace::set_parent_from_metadata(&span, &event.metadata);
                let sent = self.send(&webhook, &delivery, &event);
                sent.instrument(span.clone())
                    .await
                    .unwrap_or_else(|error| Outcome::unprepared(&error))
            }
            Err(error) => Outcome::unprepared(&error),
        };
        if let Some(status) = outcome.status {
            span.record("status", status);
        }
        let recorded = self.record(&delivery, &outcome).instrument(span).await;
        if let Err(error) = recorded {
            tracing::warn!(
                delivery_id = id,
                error = format!("{error:#}"),
                "a webhook delivery's attempt could not be recorded"
            );
        }
    }

    /// The webhook and the event a delivery sends.
    async fn prepare(&self, delivery: &Claimed) -> anyhow::Result<(Webhook, StoredEvent)> {
        let webhook = subscription::get(&self.pool, delivery.webhook_id)
            .await?
            .context("the webhook is gone")?;
        let event = payload::event(
            &self.pool,
            &delivery.aggregate_type,
            &delivery.aggregate_id,
            delivery.sequence,
        )
        .await?;
        Ok((webhook, event))
    }

    async fn send(
        &self,
        webhook: &Webhook,
        delivery: &Claimed,
        event: &StoredEvent,
    ) -> anyhow::Result<Outcome> {
        let started = Instant::now();
        let refused = |error: String| Outcome {
            status: None,
            error: Some(error),
            excerpt: None,
            latency: started.elapsed(),
            unprepared: false,
        };
        let url = match address::parse(&webhook.url)
            .and_then(|url| address::check_literal(&url, self.config.allow_private).map(|()| url))
        {
            Ok(url) => url,
            Err(refusal) => return Ok(refused(refusal.0)),
        };
        let body = payload::body(&self.pool, event, webhook.owner).await?;
        let keys = subscription::signing_keys(&self.pool, webhook.webhook_id)
            .await?
            .context("the webhook is gone")?;
        let timestamp = Utc::now().timestamp();
        let signature = signature_header(&keys, &delivery.message_id, timestamp, &body);
        let request = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body);
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(error) => return Ok(refused(describe(&error))),
        };
        let status = response.status().as_u16();
        let mut read = Vec::new();
        let mut error = None;
        while read.len() < RESPONSE_LIMIT {
            match response.chunk().await {
                Ok(Some(chunk)) => read.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    error = Some(describe(&e));
                    break;
                }
            }
        }
        let excerpt = printable(&String::from_utf8_lossy(&read));
        Ok(Outcome {
            status: Some(status),
            error,
            excerpt: (!excerpt.is_empty()).then_some(excerpt),
            latency: started.elapsed(),
            unprepared: false,
        })
    }

    /// Writes the attempt to the log and the delivery's next state, and moves the webhook's
    /// circuit, in one transaction, only while the delivery is still this attempt's.
    async fn record(&self, delivery: &Claimed, outcome: &Outcome) -> anyhow::Result<()> {
        let delivered = outcome.delivered();
        let next = if delivered {
            None
        } else {
            let elapsed = (Utc::now() - delivery.window_opened_at)
                .to_std()
                .unwrap_or_default();
            let attempts = u32::try_from(delivery.attempts_in_window).unwrap_or(1);
            Some(self.config.backoff.after_failure(attempts, elapsed))
        };
        let (state, retry_in) = match next {
            None => ("delivered", None),
            Some(Next::GiveUp) => ("failed", None),
            Some(Next::RetryIn(wait)) => ("pending", Some(wait)),
        };
        let mut tx = self.pool.begin().await?;
        let still_ours = sqlx::query(
            "UPDATE webhook_deliveries SET state = $3, leased_until = NULL, \
             next_attempt_at = CASE WHEN $4::interval IS NULL THEN next_attempt_at ELSE now() + $4 END, \
             finished_at = CASE WHEN $3 = 'pending' THEN NULL ELSE now() END \
             WHERE delivery_id = $1 AND attempts = $2 AND state = 'pending'",
        )
        .bind(delivery.delivery_id)
        .bind(delivery.attempts)
        .bind(state)
        .bind(retry_in.map(interval))
        .execute(&mut *tx)
        .await
        .context("recording a delivery's outcome")?
        .rows_affected()
            == 1;
        if !still_ours {
            // Its lease ran out and another worker took it (or it was cancelled): that
            // worker records its own attempt.
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO webhook_attempts \
             (delivery_id, attempt, attempted_at, status, latency_ms, error, response_excerpt) \
             VALUES ($1, $2, now() - $3, $4, $5, $6, $7)",
        )
        .bind(delivery.delivery_id)
        .bind(delivery.attempts)
        .bind(interval(outcome.latency))
        .bind(outcome.status.map(i32::from))
        .bind(i32::try_from(outcome.latency.as_millis()).unwrap_or(i32::MAX))
        .bind(outcome.error.as_deref().map(printable))
        .bind(&outcome.excerpt)
        .execute(&mut *tx)
        .await
        .context("logging a delivery attempt")?;
        if !outcome.unprepared {
            sqlx::query(
                "UPDATE webhooks SET \
                 consecutive_failures = CASE WHEN $2 THEN 0 ELSE consecutive_failures + 1 END, \
                 circuit_open_until = CASE WHEN $2 THEN NULL \
                     WHEN consecutive_failures + 1 >= $3 THEN now() + $4 ELSE circuit_open_until END \
                 WHERE webhook_id = $1",
            )
            .bind(delivery.webhook_id)
            .bind(delivered)
            .bind(self.config.breaker.failures_to_open)
            .bind(interval(self.config.breaker.open_for))
            .execute(&mut *tx)
            .await
            .context("moving a webhook's circuit")?;
        }
        tx.commit().await?;
        let outcome_label = match state {
            "delivered" => "delivered",
            "failed" => "gave_up",
            _ => "retrying",
        };
        metrics::counter!("commerce_webhook_attempts_total", "outcome" => outcome_label)
            .increment(1);
        metrics::histogram!("commerce_webhook_attempt_duration_seconds")
            .record(outcome.latency.as_secs_f64());
        Ok(())
    }
}

/// The start of a receiver's text as the log keeps it: Postgres text holds no NUL.
fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| *c != '\0')
        .take(EXCERPT_CHARS)
        .collect()
}

/// A duration as Postgres's `interval` holds it: to the microsecond.
fn interval(duration: Duration) -> Duration {
    Duration::from_micros(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX))
}

/// A transport error in words for the delivery log: what happened, never the request.
fn describe(error: &reqwest::Error) -> String {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_redirect() {
        "redirected"
    } else if error.is_body() || error.is_decode() {
        "the response broke off"
    } else {
        "the request failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        cause = inner.to_string();
        source = inner.source();
    }
    if cause.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {cause}")
    }
}

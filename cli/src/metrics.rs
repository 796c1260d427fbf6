//! Every series the engine exports on `/metrics`, described in one place, and the gauges read
//! from the database for operators.
//!
//! The crates emit their own series where things happen (`metrics::counter!` and friends); this
//! module owns what each series means: [`describe`] gives every one its `# HELP`, once, when the
//! recorder is installed. A new series gets its line here.
//!
//! Gauges that describe the database rather than this process (stuck sagas, the age of the
//! transaction holding the xid horizon back, dead letters per projection) are refreshed every
//! [`REFRESH_EVERY`] by one task ([`refresh_gauges`]) in the roles that run projections, never
//! per scrape.

use std::time::Duration;

use anyhow::Context;
use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use sqlx::{PgExecutor, PgPool};
use tokio_util::sync::CancellationToken;

/// How often the database-derived gauges are read.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// A saga this long past its deadline, with no live lease, is stuck.
const OVERDUE_AFTER_SECONDS: f64 = 30.0;

/// The git commit the binary was built from, when the build could tell.
const GIT_SHA: Option<&str> = option_env!("COMMERCE_GIT_SHA");

/// Describes every series, and sets `commerce_build_info`. Called once, after the recorder is
/// installed (descriptions go to the installed recorder).
pub fn describe() {
    // HTTP (commerce-http).
    describe_counter!(
        "http_requests_total",
        "HTTP requests answered, by method, route and status"
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request, by method and route"
    );

    describe_counter!(
        "commerce_rate_limited_requests_total",
        "API requests refused with 429 because their caller (a token's account, else an IP) was over the rate limit"
    );

    // Commands (commerce-store).
    describe_counter!(
        "commerce_commands_total",
        "Commands decided, by aggregate type and outcome (accepted, rejected, conflict, duplicate, fenced, error)"
    );

    // The read replica (commerce-query-api).
    describe_gauge!(
        "commerce_read_replica_in_use",
        "1 while the query routes read the read replica (COMMERCE_READ_DATABASE_URL), 0 while they read the primary because it is down, behind by more than COMMERCE_READ_MAX_LAG, or not checked yet"
    );
    describe_gauge!(
        "commerce_read_replica_lag_seconds",
        Unit::Seconds,
        "How far the read replica's replay was behind the primary's flushed WAL at the last check"
    );

    // The relay (commerce-projections).
    describe_gauge!(
        "commerce_relay_active",
        "1 while this process is the namespace's active relay, 0 while it stands by"
    );
    describe_gauge!(
        "commerce_relay_connected",
        "1 while this process's relay reaches NATS and does its work (publishing, or standing by), 0 while it cannot: commands are still stored, reads fall behind until it is 1 again"
    );
    describe_counter!(
        "commerce_relay_events_published_total",
        "Events the relay published to JetStream and saw acknowledged"
    );
    describe_gauge!(
        "commerce_relay_lag_seconds",
        Unit::Seconds,
        "Age of the oldest committed event the relay has not published yet (0 when caught up)"
    );
    describe_counter!(
        "commerce_relay_parked_events_total",
        "Events the relay could not publish (too large for the bus) and parked"
    );
    describe_counter!(
        "commerce_relay_stream_resets_total",
        "Times the relay found the stream recreated or missing published messages and republished everything"
    );

    // Projections (commerce-projections).
    describe_counter!(
        "commerce_projection_events_total",
        "Events a projection handled, by outcome (applied, healed, duplicate, parked, ignored, malformed)"
    );
    describe_gauge!(
        "commerce_projection_position",
        "Highest event-store position a projection has applied"
    );
    describe_gauge!(
        "commerce_projection_lag_seconds",
        Unit::Seconds,
        "How far behind the newest event a projection is (0 when caught up)"
    );
    describe_gauge!(
        "commerce_projection_pending",
        "Messages of a projection's consumer not yet delivered or acknowledged"
    );
    describe_counter!(
        "commerce_projection_retries_total",
        "Batches a projection retried after a transient failure"
    );
    describe_counter!(
        "commerce_projection_dead_letters_total",
        "Events a projection parked in dead_letters after its retries"
    );
    describe_gauge!(
        "commerce_dead_letters",
        "Events of a projection still parked in dead_letters (not retried)"
    );

    // Rebuilds (commerce-projections' rebuild runner).
    describe_gauge!(
        "commerce_rebuilds_running",
        "Read-model rebuilds requested and not ended (completed, failed or cancelled)"
    );
    describe_gauge!(
        "commerce_rebuild_events_per_second",
        "Events per second a projection's running rebuild applies"
    );

    // Webhooks (commerce-webhooks).
    describe_counter!(
        "commerce_webhook_attempts_total",
        "Webhook delivery attempts, by outcome: delivered, retrying (a failure, retried later) or gave_up (the retry window passed)"
    );
    describe_gauge!(
        "commerce_webhook_deliveries_pending",
        "Webhook deliveries not delivered yet (waiting for an attempt or a retry, or behind an open circuit)"
    );
    describe_histogram!(
        "commerce_webhook_attempt_duration_seconds",
        Unit::Seconds,
        "How long a webhook delivery attempt took, to the last byte of the answer read"
    );
    // Sagas and the payment gateway (commerce-sagas).
    describe_histogram!(
        "commerce_saga_steps_per_commit",
        Unit::Count,
        "Saga steps committed together in one transaction"
    );
    describe_counter!(
        "commerce_sagas_completed_total",
        "Checkout sagas that ended, by outcome"
    );
    describe_counter!(
        "commerce_saga_fenced_writes_total",
        "Saga steps refused because their worker had lost the saga's lease"
    );
    describe_gauge!(
        "commerce_stuck_sagas",
        "Sagas nothing will move on: recorded in stuck_sagas, or over 30 s past their deadline without a live lease"
    );
    describe_counter!(
        "commerce_payment_gateway_calls_total",
        "Calls to the payment gateway, by step and outcome"
    );
    describe_counter!(
        "commerce_payment_gateway_retries_total",
        "Payment gateway calls retried, by step"
    );

    // The database and the build.
    describe_gauge!(
        "commerce_xid_horizon_age_seconds",
        Unit::Seconds,
        "How long the oldest transaction holding the xid horizon back (and with it the relay) has been open; 0 when none"
    );
    describe_gauge!(
        "commerce_build_info",
        "Always 1; the labels name the engine's version (and git commit when known)"
    );

    match GIT_SHA {
        Some(sha) => metrics::gauge!(
            "commerce_build_info",
            "version" => env!("CARGO_PKG_VERSION"),
            "git_sha" => sha
        )
        .set(1.0),
        None => {
            metrics::gauge!("commerce_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0)
        }
    }
}

/// Sagas nothing will move on: those a parked event left in `stuck_sagas`, and those more than
/// 30 s past their deadline whose row no worker holds (never leased, or the lease lapsed).
pub async fn stuck_sagas(executor: impl PgExecutor<'_>) -> anyhow::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM ( \
             SELECT saga_id FROM stuck_sagas \
             UNION \
             SELECT saga_id FROM saga_deadlines \
             WHERE due_at < now() - make_interval(secs => $1) \
               AND (locked_by IS NULL OR locked_until IS NULL OR locked_until < now())) AS stuck",
    )
    .bind(OVERDUE_AFTER_SECONDS)
    .fetch_one(executor)
    .await
    .context("counting stuck sagas")
}

/// Seconds the transaction holding the xid horizon (`pg_snapshot_xmin(pg_current_snapshot())`)
/// back has been open: the one with the oldest transaction id still running, which the relay
/// cannot read past. 0 when no other transaction holds an id.
pub async fn xid_horizon_age_seconds(executor: impl PgExecutor<'_>) -> anyhow::Result<f64> {
    sqlx::query_scalar(
        "SELECT COALESCE(( \
             SELECT EXTRACT(EPOCH FROM clock_timestamp() - xact_start)::float8 \
             FROM pg_stat_activity \
             WHERE backend_xid IS NOT NULL AND xact_start IS NOT NULL AND pid <> pg_backend_pid() \
             ORDER BY age(backend_xid) DESC LIMIT 1), 0)",
    )
    .fetch_one(executor)
    .await
    .context("reading the age of the xid horizon")
}

/// Events still parked per projection, for each of `projections` (0 for those with none).
async fn dead_letters(
    executor: impl PgExecutor<'_>,
    projections: &[&'static str],
) -> anyhow::Result<Vec<(&'static str, i64)>> {
    let counts: Vec<(String, i64)> = sqlx::query_as(
        "SELECT projection, count(*) FROM dead_letters WHERE retried_at IS NULL GROUP BY projection",
    )
    .fetch_all(executor)
    .await
    .context("counting dead letters")?;
    Ok(projections
        .iter()
        .map(|name| {
            let parked = counts
                .iter()
                .find(|(p, _)| p == name)
                .map_or(0, |(_, n)| *n);
            (*name, parked)
        })
        .collect())
}

/// Reads the database-derived gauges once and sets them.
pub async fn refresh_once(pool: &PgPool, projections: &[&'static str]) -> anyhow::Result<()> {
    let stuck = stuck_sagas(pool).await?;
    metrics::gauge!("commerce_stuck_sagas").set(stuck as f64);
    let age = xid_horizon_age_seconds(pool).await?;
    metrics::gauge!("commerce_xid_horizon_age_seconds").set(age);
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'")
            .fetch_one(pool)
            .await
            .context("counting pending webhook deliveries")?;
    metrics::gauge!("commerce_webhook_deliveries_pending").set(pending as f64);
    for (projection, parked) in dead_letters(pool, projections).await? {
        metrics::gauge!("commerce_dead_letters", "projection" => projection).set(parked as f64);
    }
    Ok(())
}

/// Refreshes the database-derived gauges at once and then every [`REFRESH_EVERY`] until
/// cancelled. A failed read is logged and tried again next time.
pub async fn refresh_gauges(
    pool: PgPool,
    projections: Vec<&'static str>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let mut every = tokio::time::interval(REFRESH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = every.tick() => {}
        }
        if let Err(error) = refresh_once(&pool, &projections).await {
            tracing::warn!(
                error = format!("{error:#}"),
                "could not refresh the database gauges"
            );
        }
    }
}

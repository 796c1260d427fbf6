//! Degraded mode, seen from one process: is its NATS connection up, is its relay publishing.
//!
//! Commands are accepted while NATS or the relay is down (the event store is the truth) and the
//! relay publishes the backlog once it can; meanwhile reads fall behind, and an operator must
//! hear of it: a WARN at once, an ERROR once the outage has lasted
//! `COMMERCE_OUTAGE_ERROR_AFTER`, an INFO when it ends, `commerce_relay_connected` (set by the
//! relay) and `/health/ready`, which says what is down, since when and why ([`Health::report`]).

use std::time::Duration;

use async_nats::connection::State;
use commerce_projections::outage::{Down, Failure, Outage};
use commerce_projections::RelayStatus;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

/// How often the NATS connection's state is looked at.
const WATCH_EVERY: Duration = Duration::from_millis(250);
/// The connection is made in the background at start: not being connected yet is an outage only
/// after this.
const START_GRACE: Duration = Duration::from_secs(2);

/// What this process knows of its dependencies' outages.
#[derive(Clone)]
pub struct Health {
    pub nats: async_nats::Client,
    /// The NATS connection's outage, kept by [`watch_nats`].
    pub nats_outage: Outage,
    /// The relay this process runs, if it runs one.
    pub relay: Option<RelayStatus>,
    /// The read replica the query routes read, when configured. Its being down or behind does
    /// not make the process unready (the primary is read instead): the body only says so.
    pub read_replica: Option<commerce_query_api::ReadReplica>,
}

impl Health {
    /// The readiness body: `up`/`down` per dependency (and the relay's state when this process
    /// runs one, the read replica's when it reads one: `read_replica_fallback` then says since
    /// when and why the primary is read instead), and `down`: for each one down, since when, for
    /// how long and why.
    /// The second value says whether anything is down.
    pub fn report(&self, postgres: Result<(), String>) -> (Value, bool) {
        let mut body = Map::new();
        let mut down = Map::new();
        body.insert("postgres".into(), word(postgres.is_ok()).into());
        if let Err(reason) = postgres {
            down.insert("postgres".into(), json!({ "reason": reason }));
        }
        let nats_up = self.nats.connection_state() == State::Connected;
        body.insert("nats".into(), word(nats_up).into());
        if !nats_up {
            let outage = self.nats_outage.down().unwrap_or_else(|| Down {
                since: chrono::Utc::now(),
                reason: "not connected to NATS".into(),
            });
            down.insert("nats".into(), detail(&outage));
        }
        if let Some(relay) = &self.relay {
            let state = match relay.down() {
                Some(outage) => {
                    down.insert("relay".into(), detail(&outage));
                    "down"
                }
                None if relay.is_active() => "active",
                None if relay.is_connected() => "standby",
                None => "starting",
            };
            body.insert("relay".into(), state.into());
        }
        if let Some(replica) = &self.read_replica {
            let status = replica.status();
            body.insert("read_replica".into(), status.state.as_str().into());
            if let Some(reason) = status.reason {
                let outage = Down {
                    since: status.since,
                    reason,
                };
                body.insert("read_replica_fallback".into(), detail(&outage));
            }
        }
        let degraded = !down.is_empty();
        if degraded {
            body.insert("down".into(), Value::Object(down));
        }
        (Value::Object(body), degraded)
    }
}

fn word(up: bool) -> &'static str {
    if up {
        "up"
    } else {
        "down"
    }
}

fn detail(outage: &Down) -> Value {
    let seconds = (chrono::Utc::now() - outage.since).num_seconds().max(0);
    json!({
        "since": outage.since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "seconds": seconds,
        "reason": outage.reason,
    })
}

/// Watches the NATS connection until `cancel`: a WARN when it is lost, an ERROR once when it
/// has been lost for `error_after`, an INFO when it is back.
pub async fn watch_nats(
    client: async_nats::Client,
    url: String,
    outage: Outage,
    error_after: Duration,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    tokio::select! {
        () = cancel.cancelled() => return Ok(()),
        () = tokio::time::sleep(START_GRACE) => {}
    }
    let mut every = tokio::time::interval(WATCH_EVERY);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            _ = every.tick() => {}
        }
        let state = client.connection_state();
        if state == State::Connected {
            if let Some(lasted) = outage.recover() {
                tracing::info!(nats_url = %url, down_seconds = lasted.as_secs(), "connected to NATS again");
            }
            continue;
        }
        if outage.fail(format!("not connected to NATS at {url} ({state:?})")) == Failure::Started {
            tracing::warn!(
                nats_url = %url,
                "not connected to NATS: commands are still accepted and stored; events are \
                 published and read models catch up once it is back"
            );
        }
        if let Some((down, lasted)) = outage.overdue(error_after) {
            tracing::error!(
                nats_url = %url,
                down_since = %down.since,
                down_seconds = lasted.as_secs(),
                "NATS has been unreachable for over {}s: read models are stale",
                error_after.as_secs()
            );
        }
    }
}

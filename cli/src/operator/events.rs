//! `events tail` (follows the store as it grows) and `events republish` (sends events to the
//! bus again from a position).

use std::time::Duration;

use clap::Subcommand;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::client::{decode, Client, Failure, Outcome};
use super::output::{self, duration, instant, or_dash};
use super::progress::{self, ended};

/// The page size of `GET /v1/admin/events` while tailing (the contract's maximum).
const PAGE: usize = 100;
/// How long `tail` waits for new events once it has caught up.
const IDLE: Duration = Duration::from_secs(1);

#[derive(Subcommand)]
pub enum EventsCommand {
    /// Print events as they are appended, until Ctrl-C.
    #[command(after_help = "Examples:\n  commerce events tail\n  \
                            commerce events tail --type order --from 1\n  \
                            commerce events tail --json | jq .event_type")]
    Tail {
        /// Only events of this aggregate type (`order`, `inventory`, …).
        #[arg(long = "type", value_name = "AGGREGATE_TYPE")]
        aggregate_type: Option<String>,
        /// Start at this position (included); default: the current end, so only new events.
        #[arg(long, value_name = "POS", value_parser = clap::value_parser!(i64).range(1..))]
        from: Option<i64>,
    },
    /// Publish the store's events to the bus again, from a position on (consumers skip what
    /// they already applied).
    #[command(after_help = "Example:\n  commerce events republish --from 1 --wait")]
    Republish {
        /// The first position to publish again.
        #[arg(long, value_name = "POS", value_parser = clap::value_parser!(i64).range(1..))]
        from: i64,
        /// Follow it with a progress bar until it ends: exit 0 when it completes, 1 when it fails.
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Debug, Deserialize)]
struct EventPage {
    items: Vec<Value>,
}

/// The fields of an event `tail` prints; the whole item goes out under `--json`.
#[derive(Debug, Deserialize)]
struct Event {
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    position: i64,
    event_type: String,
    recorded_at: String,
}

#[derive(Debug, Deserialize)]
struct Projections {
    items: Vec<ProjectionPosition>,
}

#[derive(Debug, Deserialize)]
struct ProjectionPosition {
    position: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct Republish {
    republish_id: Uuid,
    from_position: i64,
    state: String,
    events_done: u64,
    events_total: u64,
    events_per_second: Option<f64>,
    eta_seconds: Option<f64>,
    error: Option<String>,
    started_at: Option<String>,
    finished_at: Option<String>,
}

pub async fn run(client: &mut Client, json: bool, command: EventsCommand) -> Outcome {
    match command {
        EventsCommand::Tail {
            aggregate_type,
            from,
        } => {
            tokio::select! {
                outcome = tail(client, json, aggregate_type, from) => outcome,
                // Ctrl-C is how a tail ends.
                _ = tokio::signal::ctrl_c() => Ok(()),
            }
        }
        EventsCommand::Republish { from, wait } => {
            let what = format!("republishing from position {from}");
            let body = json!({ "from_position": from });
            let mut answer = client
                .post("/v1/admin/events/republish", Some(&body), &what)
                .await?;
            let started: Republish = decode(&answer.body, &what)?;
            if wait {
                let path = format!("/v1/admin/republishes/{}", started.republish_id);
                answer = progress::wait(client, &path, &what, answer, json).await?;
            }
            let republish: Republish = decode(&answer.body, &what)?;
            if json {
                output::print_json(&answer);
            } else {
                println!("{}", republish_fields(&republish));
            }
            match (wait, ended(&republish.state)) {
                (false, _) | (true, Some(true)) => Ok(()),
                (true, _) => Err(Failure::failed(format!(
                    "republish {} ended {}: {}",
                    republish.republish_id,
                    republish.state,
                    or_dash(republish.error.as_deref())
                ))),
            }
        }
    }
}

async fn tail(
    client: &mut Client,
    json: bool,
    aggregate_type: Option<String>,
    from: Option<i64>,
) -> Outcome {
    let mut after = match from {
        Some(from) => from - 1,
        None => end(client, aggregate_type.as_deref()).await?,
    };
    if !json {
        println!("{}", header());
    }
    loop {
        let items = page(client, after, aggregate_type.as_deref()).await?;
        for item in &items {
            let event: Event = decode(item, "tailing events")?;
            after = after.max(event.position);
            if json {
                println!("{item}");
            } else {
                println!("{}", line(&event));
            }
        }
        if items.len() < PAGE {
            tokio::time::sleep(IDLE).await;
        }
    }
}

/// Events after `after`, a page at most.
async fn page(
    client: &mut Client,
    after: i64,
    aggregate_type: Option<&str>,
) -> Outcome<Vec<Value>> {
    let mut query = vec![("after", after.to_string()), ("limit", PAGE.to_string())];
    if let Some(aggregate_type) = aggregate_type {
        query.push(("aggregate_type", aggregate_type.to_owned()));
    }
    let answer = client
        .get("/v1/admin/events", &query, "tailing events")
        .await?;
    Ok(decode::<EventPage>(&answer.body, "tailing events")?.items)
}

/// The store's current end (of one type): the API has no "last position", so this starts at
/// the furthest projection (every position below it exists) and pages forward to the end.
async fn end(client: &mut Client, aggregate_type: Option<&str>) -> Outcome<i64> {
    let answer = client
        .get("/v1/admin/projections", &[], "finding the end of the store")
        .await?;
    let projections: Projections = decode(&answer.body, "finding the end of the store")?;
    let mut end = projections
        .items
        .iter()
        .filter_map(|p| p.position)
        .max()
        .unwrap_or(0);
    loop {
        let items = page(client, end, aggregate_type).await?;
        for item in &items {
            end = end.max(decode::<Event>(item, "finding the end of the store")?.position);
        }
        if items.len() < PAGE {
            return Ok(end);
        }
    }
}

fn header() -> String {
    format!(
        "{:>10}  {:<19}  {:<32}  STREAM",
        "POSITION", "RECORDED", "EVENT"
    )
}

fn line(event: &Event) -> String {
    format!(
        "{:>10}  {:<19}  {:<32}  {} {} #{}",
        event.position,
        instant(Some(&event.recorded_at)),
        event.event_type,
        event.aggregate_type,
        event.aggregate_id,
        event.sequence
    )
}

fn republish_fields(r: &Republish) -> String {
    let rate = r.events_per_second.map(|rate| format!("{rate:.0}/s"));
    output::fields([
        ("republish", r.republish_id.to_string()),
        ("from position", r.from_position.to_string()),
        ("state", r.state.clone()),
        ("events", format!("{} / {}", r.events_done, r.events_total)),
        ("rate", or_dash(rate)),
        ("eta", duration(r.eta_seconds)),
        ("error", or_dash(r.error.as_deref())),
        ("started", instant(r.started_at.as_deref())),
        ("finished", instant(r.finished_at.as_deref())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_lines_line_up_with_the_header() {
        let event: Event = decode(
            &json!({"aggregate_type": "order", "aggregate_id": "o-1", "sequence": 3,
                    "position": 1234, "event_type": "OrderPlaced", "event_version": 1,
                    "recorded_at": "2025-01-31T12:00:00Z", "payload": {}, "metadata": {}}),
            "test",
        )
        .unwrap();
        let (header, line) = (header(), line(&event));
        assert_eq!(
            header.find("EVENT"),
            line.find("OrderPlaced"),
            "{header}\n{line}"
        );
        assert_eq!(
            header.find("STREAM"),
            line.find("order o-1 #3"),
            "{header}\n{line}"
        );
        assert_eq!(
            header.find("POSITION").map(|i| i + "POSITION".len()),
            line.find("1234").map(|i| i + 4)
        );
    }
}

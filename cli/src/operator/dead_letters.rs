//! `dead-letters list|show|retry|retry-all`: events a projection could not apply, parked.

use clap::Subcommand;
use serde::Deserialize;
use serde_json::{json, Value};

use super::client::{decode, Client, Exit, Failure, Outcome, Page};
use super::output::{self, instant, or_dash, scalar};

#[derive(Subcommand)]
pub enum DeadLettersCommand {
    /// Parked events, oldest first.
    List {
        /// Only this projection's.
        #[arg(long)]
        projection: Option<String>,
        /// Also those already retried.
        #[arg(long)]
        include_retried: bool,
        #[command(flatten)]
        page: Page,
    },
    /// One parked event, with its payload and the error.
    Show { dead_letter_id: String },
    /// Apply one parked event again: exit 0 when it applies, 1 when it still fails.
    Retry { dead_letter_id: String },
    /// Apply every parked event again (of one projection): exit 1 when any still fails.
    #[command(after_help = "Example:\n  commerce dead-letters retry-all --projection orders")]
    RetryAll {
        /// Only this projection's.
        #[arg(long)]
        projection: Option<String>,
    },
}

#[derive(Debug, Deserialize)]
struct DeadLetters {
    items: Vec<DeadLetter>,
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DeadLetter {
    /// A number or a string, shown as the engine gives it.
    dead_letter_id: Value,
    projection: String,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    position: i64,
    event_type: String,
    error: String,
    attempts: i64,
    parked_at: Option<String>,
    retried_at: Option<String>,
    #[serde(default)]
    event_version: Option<Value>,
    #[serde(default)]
    recorded_at: Option<String>,
    #[serde(default)]
    payload: Option<Value>,
    #[serde(default)]
    metadata: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct RetriedAll {
    applied: u64,
    failed: u64,
    failed_ids: Vec<Value>,
}

pub async fn run(client: &mut Client, json: bool, command: DeadLettersCommand) -> Outcome {
    match command {
        DeadLettersCommand::List {
            projection,
            include_retried,
            page,
        } => {
            let what = "listing dead letters";
            let mut query = page.query();
            if let Some(projection) = projection {
                query.push(("projection", projection));
            }
            query.push(("include_retried", include_retried.to_string()));
            let answer = client.get("/v1/admin/dead-letters", &query, what).await?;
            if json {
                output::print_json(&answer);
            } else {
                let list: DeadLetters = decode(&answer.body, what)?;
                println!("{}", list_table(&list.items));
                output::more(list.next_cursor.as_deref());
            }
        }
        DeadLettersCommand::Show { dead_letter_id } => {
            let what = format!("dead letter {dead_letter_id}");
            let path = format!("/v1/admin/dead-letters/{dead_letter_id}");
            let answer = client.get(&path, &[], &what).await?;
            if json {
                output::print_json(&answer);
            } else {
                println!("{}", details(&decode(&answer.body, &what)?));
            }
        }
        DeadLettersCommand::Retry { dead_letter_id } => {
            let what = format!("retrying dead letter {dead_letter_id}");
            let path = format!("/v1/admin/dead-letters/{dead_letter_id}/retry");
            let answer = match client.post(&path, None, &what).await {
                // The contract's 409 here is the event failing again: the operation failed.
                Err(failure) if failure.exit == Exit::Conflict => {
                    return Err(Failure::failed(failure.message.replacen(
                        "conflict: ",
                        "still failing: ",
                        1,
                    )))
                }
                answer => answer?,
            };
            if json {
                output::print_json(&answer);
            } else {
                println!(
                    "dead letter {dead_letter_id}: {}",
                    answer.body["outcome"].as_str().unwrap_or("applied")
                );
            }
        }
        DeadLettersCommand::RetryAll { projection } => {
            let what = "retrying dead letters";
            let body = projection.map(|projection| json!({ "projection": projection }));
            let answer = client
                .post("/v1/admin/dead-letters/retry", body.as_ref(), what)
                .await?;
            let retried: RetriedAll = decode(&answer.body, what)?;
            if json {
                output::print_json(&answer);
            } else {
                println!(
                    "applied {}, still failing {}",
                    retried.applied, retried.failed
                );
            }
            if retried.failed > 0 {
                let ids: Vec<String> = retried.failed_ids.iter().map(scalar).collect();
                return Err(Failure::failed(format!(
                    "{} dead letter(s) still failing: {}",
                    retried.failed,
                    ids.join(", ")
                )));
            }
        }
    }
    Ok(())
}

fn list_table(items: &[DeadLetter]) -> String {
    output::table(
        [
            "ID",
            "PROJECTION",
            "POSITION",
            "EVENT",
            "STREAM",
            "ATTEMPTS",
            "PARKED",
            "RETRIED",
            "ERROR",
        ],
        items.iter().map(|d| {
            [
                scalar(&d.dead_letter_id),
                d.projection.clone(),
                d.position.to_string(),
                d.event_type.clone(),
                format!("{} {} #{}", d.aggregate_type, d.aggregate_id, d.sequence),
                d.attempts.to_string(),
                instant(d.parked_at.as_deref()),
                instant(d.retried_at.as_deref()),
                d.error.lines().next().unwrap_or_default().to_owned(),
            ]
        }),
    )
}

fn details(d: &DeadLetter) -> String {
    let fields = output::fields([
        ("dead letter", scalar(&d.dead_letter_id)),
        ("projection", d.projection.clone()),
        ("stream", format!("{} {}", d.aggregate_type, d.aggregate_id)),
        ("sequence", d.sequence.to_string()),
        ("position", d.position.to_string()),
        ("event", d.event_type.clone()),
        (
            "event version",
            or_dash(d.event_version.as_ref().map(scalar)),
        ),
        ("recorded", instant(d.recorded_at.as_deref())),
        ("attempts", d.attempts.to_string()),
        ("parked", instant(d.parked_at.as_deref())),
        ("retried", instant(d.retried_at.as_deref())),
    ]);
    let json_or_dash =
        |v: &Option<Value>| v.as_ref().map_or_else(|| "-".to_owned(), output::pretty);
    format!(
        "{fields}\n\nerror:\n{}\n\npayload:\n{}\n\nmetadata:\n{}",
        d.error,
        json_or_dash(&d.payload),
        json_or_dash(&d.metadata)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_and_string_ids_print_bare() {
        assert_eq!(scalar(&json!(17)), "17");
        assert_eq!(scalar(&json!("dl-17")), "dl-17");
    }

    #[test]
    fn a_dead_letter_shows_its_error_and_payload() {
        let letter: DeadLetter = decode(
            &json!({"dead_letter_id": 3, "projection": "orders", "aggregate_type": "order",
                    "aggregate_id": "o-1", "sequence": 2, "position": 40, "event_type": "OrderPaid",
                    "error": "no such order\ncaused by: row missing", "attempts": 5,
                    "parked_at": "2025-01-31T12:00:00Z", "retried_at": null, "event_version": 1,
                    "recorded_at": "2025-01-31T11:59:59Z", "payload": {"amount": 100}, "metadata": {}}),
            "test",
        )
        .unwrap();
        let text = details(&letter);
        assert!(text.contains("caused by: row missing"), "{text}");
        assert!(text.contains("\"amount\": 100"), "{text}");
        let table = list_table(std::slice::from_ref(&letter));
        assert!(
            table.lines().nth(1).unwrap().ends_with("no such order"),
            "{table}"
        );
    }
}

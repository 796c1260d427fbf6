//! `sagas list|show|retry`: checkout sagas, the stuck ones first.

use clap::Subcommand;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::client::{decode, Client, Outcome, Page};
use super::output::{self, compact, instant, or_dash, scalar};

#[derive(Subcommand)]
pub enum SagasCommand {
    /// Sagas, the stuck ones first.
    #[command(after_help = "Examples:\n  commerce sagas list --stuck\n  \
                            commerce sagas list --state awaiting_payment")]
    List {
        /// Only stuck sagas (past their deadline, lease lost, or waiting on a parked event).
        #[arg(long)]
        stuck: bool,
        /// Only sagas in this recorded state.
        #[arg(long)]
        state: Option<String>,
        #[command(flatten)]
        page: Page,
    },
    /// One saga: its state, why it is stuck, and its recorded steps.
    Show { saga_id: Uuid },
    /// Make a saga due now (retrying its parked event first when that is what holds it).
    Retry { saga_id: Uuid },
}

#[derive(Debug, Deserialize)]
struct Sagas {
    items: Vec<Saga>,
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Saga {
    saga_id: Uuid,
    state: Value,
    stuck: bool,
    stuck_reasons: Vec<String>,
    due_at: Option<String>,
    attempts: Option<i64>,
    dead_letter_id: Option<Value>,
    updated_at: Option<String>,
    #[serde(default)]
    order_id: Option<Value>,
    /// The folded saga on `show`: the contract calls it the saga's `state` JSON, while
    /// `state` stays the one-word stage of the list; both shapes are read.
    #[serde(default)]
    saga: Option<Value>,
    #[serde(default)]
    events: Vec<SagaStep>,
}

#[derive(Debug, Deserialize)]
struct SagaStep {
    #[serde(default)]
    sequence: Option<i64>,
    #[serde(default)]
    position: Option<i64>,
    event_type: String,
    #[serde(default)]
    recorded_at: Option<String>,
    #[serde(default)]
    payload: Value,
}

pub async fn run(client: &mut Client, json: bool, command: SagasCommand) -> Outcome {
    let answer = match command {
        SagasCommand::List { stuck, state, page } => {
            let what = "listing sagas";
            let mut query = page.query();
            if stuck {
                query.push(("stuck", "true".to_owned()));
            }
            if let Some(state) = state {
                query.push(("state", state));
            }
            let answer = client.get("/v1/admin/sagas", &query, what).await?;
            if !json {
                let list: Sagas = decode(&answer.body, what)?;
                println!("{}", list_table(&list.items));
                output::more(list.next_cursor.as_deref());
                return Ok(());
            }
            answer
        }
        SagasCommand::Show { saga_id } => {
            let what = format!("saga {saga_id}");
            let answer = client
                .get(&format!("/v1/admin/sagas/{saga_id}"), &[], &what)
                .await?;
            if !json {
                println!("{}", details(&decode(&answer.body, &what)?));
                return Ok(());
            }
            answer
        }
        SagasCommand::Retry { saga_id } => {
            let what = format!("retrying saga {saga_id}");
            let answer = client
                .post(&format!("/v1/admin/sagas/{saga_id}/retry"), None, &what)
                .await?;
            if !json {
                let due = answer.body["due_at"].as_str();
                println!("saga {saga_id} is due at {}", instant(due));
                return Ok(());
            }
            answer
        }
    };
    output::print_json(&answer);
    Ok(())
}

/// The saga's recorded state in a cell: its name when it has one, else the JSON.
fn state_cell(state: &Value) -> String {
    match state {
        Value::String(name) => name.clone(),
        Value::Object(fields) => fields
            .get("state")
            .or_else(|| fields.get("status"))
            .and_then(Value::as_str)
            .map_or_else(|| compact(state, 40), str::to_owned),
        other => compact(other, 40),
    }
}

fn reasons(saga: &Saga) -> String {
    match (saga.stuck, saga.stuck_reasons.is_empty()) {
        (false, _) => "-".to_owned(),
        (true, true) => "stuck".to_owned(),
        (true, false) => saga.stuck_reasons.join(","),
    }
}

fn list_table(items: &[Saga]) -> String {
    output::table(
        [
            "SAGA",
            "STATE",
            "STUCK",
            "DUE",
            "ATTEMPTS",
            "DEAD LETTER",
            "UPDATED",
        ],
        items.iter().map(|s| {
            [
                s.saga_id.to_string(),
                state_cell(&s.state),
                reasons(s),
                instant(s.due_at.as_deref()),
                or_dash(s.attempts),
                or_dash(s.dead_letter_id.as_ref().map(scalar)),
                instant(s.updated_at.as_deref()),
            ]
        }),
    )
}

fn details(saga: &Saga) -> String {
    let fields = output::fields([
        ("saga", saga.saga_id.to_string()),
        ("order", or_dash(saga.order_id.as_ref().map(scalar))),
        ("state", state_cell(&saga.state)),
        ("stuck", reasons(saga)),
        ("due", instant(saga.due_at.as_deref())),
        ("attempts", or_dash(saga.attempts)),
        ("updated", instant(saga.updated_at.as_deref())),
    ]);
    let steps = output::table(
        ["SEQ", "POSITION", "STEP", "RECORDED", "PAYLOAD"],
        saga.events.iter().map(|e| {
            [
                or_dash(e.sequence),
                or_dash(e.position),
                e.event_type.clone(),
                instant(e.recorded_at.as_deref()),
                compact(&e.payload, 60),
            ]
        }),
    );
    let folded = saga.saga.as_ref().unwrap_or(&saga.state);
    format!(
        "{fields}\n\nstate:\n{}\n\nsteps:\n{steps}",
        output::pretty(folded)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stuck_sagas_say_why() {
        let sagas: Sagas = decode(
            &json!({"items": [
                {"saga_id": "01900000-0000-7000-8000-000000000001", "state": "awaiting_payment",
                 "stuck": true, "stuck_reasons": ["past_deadline", "lease_lost"],
                 "due_at": "2025-01-31T12:00:00Z", "attempts": 3, "dead_letter_id": null,
                 "updated_at": "2025-01-31T12:00:00Z"},
                {"saga_id": "01900000-0000-7000-8000-000000000002", "state": {"state": "completed"},
                 "stuck": false, "stuck_reasons": [], "due_at": null, "attempts": 0,
                 "dead_letter_id": 9, "updated_at": null}
            ], "next_cursor": null}),
            "test",
        )
        .unwrap();
        let text = list_table(&sagas.items);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].contains("awaiting_payment") && lines[1].contains("past_deadline,lease_lost"),
            "{text}"
        );
        assert!(
            lines[2].contains("completed") && lines[2].contains(" 9 "),
            "{text}"
        );
    }
}

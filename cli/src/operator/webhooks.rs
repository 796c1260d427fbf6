//! `webhooks list|deliveries|retry|replay`: outbound subscriptions, their delivery log,
//! redelivery and replay from a position.

use clap::Subcommand;
use serde::Deserialize;
use serde_json::{json, Value};

use super::client::{decode, Client, Outcome, Page};
use super::output::{self, instant, or_dash};

#[derive(Subcommand)]
pub enum WebhooksCommand {
    /// Webhooks, newest first (an admin sees every one).
    List {
        #[command(flatten)]
        page: Page,
    },
    /// A webhook's delivery log, newest first, with each delivery's attempts.
    Deliveries {
        webhook_id: String,
        /// Only deliveries in this state: pending, delivered, failed or cancelled.
        #[arg(long)]
        state: Option<String>,
        #[command(flatten)]
        page: Page,
    },
    /// Send one delivery again now (same `webhook-id`).
    Retry {
        webhook_id: String,
        delivery_id: String,
    },
    /// Send again every event the webhook takes from a position of the store on.
    #[command(after_help = "Example:\n  commerce webhooks replay 0190c6c1-… --from 1")]
    Replay {
        webhook_id: String,
        /// The first position to send again.
        #[arg(long = "from", value_name = "POSITION")]
        from_position: i64,
    },
}

#[derive(Debug, Deserialize)]
struct Webhooks {
    items: Vec<Webhook>,
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Webhook {
    webhook_id: String,
    url: String,
    event_types: Vec<String>,
    owner_role: String,
    created_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Deliveries {
    items: Vec<Delivery>,
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Delivery {
    delivery_id: Value,
    #[serde(rename = "type")]
    event_type: String,
    position: i64,
    state: String,
    message_id: String,
    next_attempt_at: Option<String>,
    attempts: Vec<Attempt>,
}

#[derive(Debug, Deserialize)]
struct Attempt {
    status: Option<i64>,
    error: Option<String>,
}

pub async fn run(client: &mut Client, json: bool, command: WebhooksCommand) -> Outcome {
    match command {
        WebhooksCommand::List { page } => {
            let what = "listing webhooks";
            let answer = client.get("/v1/webhooks", &page.query(), what).await?;
            if json {
                output::print_json(&answer);
            } else {
                let list: Webhooks = decode(&answer.body, what)?;
                println!(
                    "{}",
                    output::table(
                        ["ID", "URL", "EVENT TYPES", "OWNER", "CREATED"],
                        list.items.iter().map(|w| [
                            w.webhook_id.clone(),
                            w.url.clone(),
                            w.event_types.join(","),
                            w.owner_role.clone(),
                            instant(w.created_at.as_deref()),
                        ]),
                    )
                );
                output::more(list.next_cursor.as_deref());
            }
        }
        WebhooksCommand::Deliveries {
            webhook_id,
            state,
            page,
        } => {
            let what = format!("webhook {webhook_id}'s deliveries");
            let mut query = page.query();
            if let Some(state) = state {
                query.push(("state", state));
            }
            let path = format!("/v1/webhooks/{webhook_id}/deliveries");
            let answer = client.get(&path, &query, &what).await?;
            if json {
                output::print_json(&answer);
            } else {
                let list: Deliveries = decode(&answer.body, &what)?;
                println!("{}", deliveries_table(&list.items));
                output::more(list.next_cursor.as_deref());
            }
        }
        WebhooksCommand::Retry {
            webhook_id,
            delivery_id,
        } => {
            let what = format!("redelivering {delivery_id}");
            let path = format!("/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry");
            let answer = client.post(&path, Some(&json!({})), &what).await?;
            if json {
                output::print_json(&answer);
            } else {
                println!("delivery {delivery_id}: queued");
            }
        }
        WebhooksCommand::Replay {
            webhook_id,
            from_position,
        } => {
            let what = format!("replaying to webhook {webhook_id}");
            let path = format!("/v1/webhooks/{webhook_id}/replay");
            let body = json!({ "from_position": from_position });
            let answer = client.post(&path, Some(&body), &what).await?;
            if json {
                output::print_json(&answer);
            } else {
                println!(
                    "queued {} deliveries from position {from_position}",
                    answer.body["enqueued"]
                );
            }
        }
    }
    Ok(())
}

fn deliveries_table(items: &[Delivery]) -> String {
    output::table(
        [
            "ID",
            "TYPE",
            "POSITION",
            "STATE",
            "ATTEMPTS",
            "LAST",
            "NEXT",
            "WEBHOOK-ID",
        ],
        items.iter().map(|d| {
            let last = d.attempts.last().map(|a| match (a.status, &a.error) {
                (Some(status), _) => status.to_string(),
                (None, Some(error)) => error.clone(),
                (None, None) => "-".to_owned(),
            });
            [
                output::scalar(&d.delivery_id),
                d.event_type.clone(),
                d.position.to_string(),
                d.state.clone(),
                d.attempts.len().to_string(),
                or_dash(last),
                instant(d.next_attempt_at.as_deref()),
                d.message_id.clone(),
            ]
        }),
    )
}

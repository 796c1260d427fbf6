//! `streams show`: one aggregate's events, or its state folded as of a position or an instant.

use clap::Subcommand;
use serde::Deserialize;
use serde_json::Value;

use super::client::{decode, Client, Outcome, Page};
use super::output::{self, compact, instant, scalar};

#[derive(Subcommand)]
pub enum StreamsCommand {
    /// One stream's events, oldest first; with --as-of, the aggregate's state folded from its
    /// events up to that position or instant.
    #[command(after_help = "Examples:\n  commerce streams show order 0190c6e2-…\n  \
                            commerce streams show order 0190c6e2-… --as-of 1200\n  \
                            commerce streams show inventory MUG-01 --as-of 2025-01-31T12:00:00Z")]
    Show {
        /// The aggregate type (`order`, `product`, `inventory`, `cart`, `account`, …).
        aggregate_type: String,
        /// The aggregate's id.
        id: String,
        /// A position (integer) or an RFC 3339 instant: fold the events up to it.
        #[arg(long, value_parser = parse_as_of, conflicts_with_all = ["limit", "cursor"])]
        as_of: Option<String>,
        #[command(flatten)]
        page: Page,
    },
}

/// `--as-of`: a position or an RFC 3339 instant, checked here so a typo is a usage error.
fn parse_as_of(text: &str) -> Result<String, String> {
    if text.parse::<u64>().is_ok() || chrono::DateTime::parse_from_rfc3339(text).is_ok() {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "`{text}` is neither a position nor an RFC 3339 instant such as 2025-01-31T12:00:00Z"
        ))
    }
}

#[derive(Debug, Deserialize)]
struct Stream {
    aggregate_type: String,
    aggregate_id: String,
    version: i64,
    items: Vec<StreamEvent>,
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StreamEvent {
    sequence: i64,
    position: i64,
    event_type: String,
    /// A number or a string such as `"1"`, as the store records it.
    event_version: Value,
    recorded_at: String,
    payload: Value,
}

#[derive(Debug, Deserialize)]
struct Folded {
    aggregate_type: String,
    aggregate_id: String,
    version: i64,
    position: i64,
    recorded_at: String,
    state: Value,
}

pub async fn run(client: &mut Client, json: bool, command: StreamsCommand) -> Outcome {
    let StreamsCommand::Show {
        aggregate_type,
        id,
        as_of,
        page,
    } = command;
    let what = format!("stream {aggregate_type} {id}");
    let path = format!(
        "/v1/admin/streams/{}/{}",
        segment(&aggregate_type),
        segment(&id)
    );
    match as_of {
        None => {
            let answer = client.get(&path, &page.query(), &what).await?;
            if json {
                output::print_json(&answer);
                return Ok(());
            }
            let stream: Stream = decode(&answer.body, &what)?;
            println!("{}", stream_text(&stream));
            output::more(stream.next_cursor.as_deref());
        }
        Some(as_of) => {
            let answer = client
                .get(&format!("{path}/state"), &[("as_of", as_of)], &what)
                .await?;
            if json {
                output::print_json(&answer);
                return Ok(());
            }
            let folded: Folded = decode(&answer.body, &what)?;
            println!("{}", folded_text(&folded));
        }
    }
    Ok(())
}

/// A path segment with the characters a URL path would misread escaped (a SKU may hold them).
fn segment(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            escaped.push(char::from(byte));
        } else {
            escaped.push_str(&format!("%{byte:02X}"));
        }
    }
    escaped
}

fn stream_text(stream: &Stream) -> String {
    let table = output::table(
        ["SEQ", "POSITION", "EVENT", "V", "RECORDED", "PAYLOAD"],
        stream.items.iter().map(|e| {
            [
                e.sequence.to_string(),
                e.position.to_string(),
                e.event_type.clone(),
                scalar(&e.event_version),
                instant(Some(&e.recorded_at)),
                compact(&e.payload, 80),
            ]
        }),
    );
    format!(
        "{} {}  version {}\n\n{table}",
        stream.aggregate_type, stream.aggregate_id, stream.version
    )
}

fn folded_text(folded: &Folded) -> String {
    let header = output::fields([
        (
            "aggregate",
            format!("{} {}", folded.aggregate_type, folded.aggregate_id),
        ),
        ("version", folded.version.to_string()),
        ("position", folded.position.to_string()),
        ("recorded", instant(Some(&folded.recorded_at))),
    ]);
    format!("{header}\n\n{}", output::pretty(&folded.state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn as_of_takes_a_position_or_an_instant() {
        assert!(parse_as_of("1200").is_ok());
        assert!(parse_as_of("2025-01-31T12:00:00Z").is_ok());
        assert!(parse_as_of("2025-01-31T12:00:00+01:00").is_ok());
        assert!(parse_as_of("yesterday").is_err());
        assert!(parse_as_of("-3").is_err());
    }

    #[test]
    fn ids_are_escaped_as_path_segments() {
        assert_eq!(segment("MUG-01"), "MUG-01");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn a_stream_lists_its_events_under_a_header() {
        let stream: Stream = decode(
            &json!({"aggregate_type": "inventory", "aggregate_id": "MUG", "version": 2,
                    "items": [{"sequence": 1, "position": 10, "event_type": "Restocked",
                               "event_version": 1, "recorded_at": "2025-01-31T12:00:00Z",
                               "payload": {"quantity": 5}, "metadata": {}}],
                    "next_cursor": null}),
            "test",
        )
        .unwrap();
        let text = stream_text(&stream);
        assert!(text.starts_with("inventory MUG  version 2"), "{text}");
        assert!(
            text.contains("Restocked") && text.contains(r#"{"quantity":5}"#),
            "{text}"
        );
    }
}

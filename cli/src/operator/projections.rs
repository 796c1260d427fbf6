//! `projections list|rebuild` and `rebuilds list|show|cancel`.

use clap::Subcommand;
use serde::Deserialize;
use uuid::Uuid;

use super::client::{decode, Client, Failure, Outcome, Page};
use super::output::{self, duration, instant, or_dash};
use super::progress::{self, ended};

#[derive(Subcommand)]
pub enum ProjectionsCommand {
    /// Every projection: position, lag, state, parked events and any rebuild under way.
    List,
    /// Rebuild a projection's read model into new tables; reads keep using the old ones until
    /// the new ones have caught up and are swapped in.
    #[command(after_help = "Examples:\n  commerce projections rebuild orders\n  \
                            commerce projections rebuild orders --wait")]
    Rebuild {
        /// The projection, as `projections list` names it.
        name: String,
        /// Follow the rebuild with a progress bar until it ends: exit 0 when it completes,
        /// 1 when it fails or is cancelled.
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Subcommand)]
pub enum RebuildsCommand {
    /// Rebuilds, newest first.
    List {
        #[command(flatten)]
        page: Page,
    },
    /// One rebuild's progress.
    Show { rebuild_id: Uuid },
    /// Ask a rebuild to stop; the read model keeps its old tables.
    Cancel { rebuild_id: Uuid },
}

#[derive(Debug, Deserialize)]
struct Projections {
    items: Vec<ProjectionRow>,
}

#[derive(Debug, Deserialize)]
struct ProjectionRow {
    name: String,
    position: Option<i64>,
    lag_seconds: Option<f64>,
    pending: Option<i64>,
    state: String,
    last_error: Option<String>,
    last_applied_at: Option<String>,
    dead_letters: i64,
    rebuildable: bool,
    rebuild: Option<RebuildRef>,
    /// Empty when it runs whole (and from an engine that predates partitions).
    #[serde(default)]
    partitions: Vec<PartitionRef>,
}

#[derive(Debug, Deserialize)]
struct PartitionRef {
    partition: i64,
    of: i64,
    pending: i64,
}

#[derive(Debug, Deserialize)]
struct RebuildRef {
    rebuild_id: Uuid,
    state: String,
}

#[derive(Debug, Deserialize)]
pub struct RebuildProgress {
    rebuild_id: Uuid,
    projection: String,
    state: String,
    events_done: u64,
    events_total: u64,
    events_per_second: Option<f64>,
    eta_seconds: Option<f64>,
    events_parked: u64,
    resumes: u64,
    cancel_requested: bool,
    error: Option<String>,
    requested_at: Option<String>,
    updated_at: Option<String>,
    finished_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RebuildList {
    items: Vec<RebuildProgress>,
    next_cursor: Option<String>,
}

pub async fn projections(client: &mut Client, json: bool, command: ProjectionsCommand) -> Outcome {
    match command {
        ProjectionsCommand::List => {
            let answer = client
                .get("/v1/admin/projections", &[], "listing projections")
                .await?;
            if json {
                output::print_json(&answer);
            } else {
                let list: Projections = decode(&answer.body, "listing projections")?;
                println!("{}", projection_table(&list.items));
            }
            Ok(())
        }
        ProjectionsCommand::Rebuild { name, wait } => {
            let what = format!("rebuilding {name}");
            let path = format!("/v1/admin/projections/{name}/rebuild");
            let mut answer = client.post(&path, None, &what).await?;
            let started: RebuildProgress = decode(&answer.body, &what)?;
            if wait {
                let path = format!("/v1/admin/rebuilds/{}", started.rebuild_id);
                answer = progress::wait(client, &path, &what, answer, json).await?;
            }
            let progress: RebuildProgress = decode(&answer.body, &what)?;
            if json {
                output::print_json(&answer);
            } else {
                println!("{}", rebuild_fields(&progress));
                if !wait {
                    eprintln!("follow it: commerce rebuilds show {}", progress.rebuild_id);
                }
            }
            if wait {
                finished(&progress)
            } else {
                Ok(())
            }
        }
    }
}

pub async fn rebuilds(client: &mut Client, json: bool, command: RebuildsCommand) -> Outcome {
    let (answer, what) = match command {
        RebuildsCommand::List { page } => {
            let what = "listing rebuilds";
            let answer = client
                .get("/v1/admin/rebuilds", &page.query(), what)
                .await?;
            if json {
                output::print_json(&answer);
            } else {
                let list: RebuildList = decode(&answer.body, what)?;
                println!("{}", rebuild_table(&list.items));
                output::more(list.next_cursor.as_deref());
            }
            return Ok(());
        }
        RebuildsCommand::Show { rebuild_id } => {
            let what = format!("rebuild {rebuild_id}");
            let path = format!("/v1/admin/rebuilds/{rebuild_id}");
            (client.get(&path, &[], &what).await?, what)
        }
        RebuildsCommand::Cancel { rebuild_id } => {
            let what = format!("cancelling rebuild {rebuild_id}");
            let path = format!("/v1/admin/rebuilds/{rebuild_id}/cancel");
            (client.post(&path, None, &what).await?, what)
        }
    };
    if json {
        output::print_json(&answer);
    } else {
        let progress: RebuildProgress = decode(&answer.body, &what)?;
        println!("{}", rebuild_fields(&progress));
    }
    Ok(())
}

/// `--wait`'s verdict: only a completed rebuild succeeds.
fn finished(progress: &RebuildProgress) -> Outcome {
    match ended(&progress.state) {
        Some(true) => Ok(()),
        _ => Err(Failure::failed(format!(
            "rebuild {} of {} ended {}{}",
            progress.rebuild_id,
            progress.projection,
            progress.state,
            progress
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ))),
    }
}

fn projection_table(items: &[ProjectionRow]) -> String {
    output::table(
        [
            "NAME",
            "STATE",
            "POSITION",
            "LAG",
            "PENDING",
            "PARTITIONS",
            "DEAD LETTERS",
            "LAST APPLIED",
            "REBUILD",
            "LAST ERROR",
        ],
        items.iter().map(|p| {
            let rebuild = match (&p.rebuild, p.rebuildable) {
                (Some(r), _) => format!("{} {}", r.state, r.rebuild_id),
                (None, true) => "-".to_owned(),
                (None, false) => "not rebuildable".to_owned(),
            };
            [
                p.name.clone(),
                p.state.clone(),
                or_dash(p.position),
                duration(p.lag_seconds),
                or_dash(p.pending),
                partitions(&p.partitions),
                p.dead_letters.to_string(),
                instant(p.last_applied_at.as_deref()),
                rebuild,
                p.last_error
                    .as_deref()
                    .map_or_else(|| "-".to_owned(), one_line),
            ]
        }),
    )
}

/// `-` for a projection run whole; else each partition and its pending messages, `0/2:5 1/2:0`.
fn partitions(partitions: &[PartitionRef]) -> String {
    if partitions.is_empty() {
        return "-".to_owned();
    }
    partitions
        .iter()
        .map(|p| format!("{}/{}:{}", p.partition, p.of, p.pending))
        .collect::<Vec<_>>()
        .join(" ")
}

fn rebuild_table(items: &[RebuildProgress]) -> String {
    output::table(
        [
            "REBUILD",
            "PROJECTION",
            "STATE",
            "DONE",
            "TOTAL",
            "REQUESTED",
            "FINISHED",
        ],
        items.iter().map(|r| {
            [
                r.rebuild_id.to_string(),
                r.projection.clone(),
                r.state.clone(),
                r.events_done.to_string(),
                r.events_total.to_string(),
                instant(r.requested_at.as_deref()),
                instant(r.finished_at.as_deref()),
            ]
        }),
    )
}

fn rebuild_fields(r: &RebuildProgress) -> String {
    let rate = r.events_per_second.map(|rate| format!("{rate:.0}/s"));
    output::fields([
        ("rebuild", r.rebuild_id.to_string()),
        ("projection", r.projection.clone()),
        ("state", r.state.clone()),
        ("events", format!("{} / {}", r.events_done, r.events_total)),
        ("rate", or_dash(rate)),
        ("eta", duration(r.eta_seconds)),
        ("parked", r.events_parked.to_string()),
        ("resumes", r.resumes.to_string()),
        ("cancel requested", r.cancel_requested.to_string()),
        ("error", or_dash(r.error.as_deref())),
        ("requested", instant(r.requested_at.as_deref())),
        ("updated", instant(r.updated_at.as_deref())),
        ("finished", instant(r.finished_at.as_deref())),
    ])
}

/// An error's first line, so a table row stays one line.
fn one_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn progress(state: &str) -> RebuildProgress {
        decode(
            &json!({"rebuild_id": "01900000-0000-7000-8000-000000000001", "projection": "orders",
                    "state": state, "events_done": 5, "events_total": 9, "events_per_second": null,
                    "eta_seconds": null, "events_parked": 0, "resumes": 0, "cancel_requested": false,
                    "error": if state == "failed" { json!("disk full") } else { json!(null) },
                    "requested_at": "2025-01-31T12:00:00Z", "updated_at": "2025-01-31T12:00:01Z",
                    "finished_at": null}),
            "test",
        )
        .unwrap()
    }

    #[test]
    fn waiting_succeeds_only_on_completion() {
        assert!(finished(&progress("completed")).is_ok());
        let failure = finished(&progress("failed")).unwrap_err();
        assert_eq!(failure.exit, super::super::client::Exit::Failed);
        assert!(
            failure.message.ends_with("ended failed: disk full"),
            "{}",
            failure.message
        );
        assert!(finished(&progress("cancelled")).is_err());
    }

    #[test]
    fn the_projection_table_says_what_cannot_be_rebuilt() {
        let list: Projections = decode(
            &json!({"items": [
                {"name": "orders", "position": 42, "horizon": 7, "lag_seconds": 0.2, "pending": 0,
                 "state": "running", "last_error": null, "last_applied_at": "2025-01-31T12:00:00Z",
                 "dead_letters": 1, "rebuildable": true,
                 "rebuild": {"rebuild_id": "01900000-0000-7000-8000-000000000001", "state": "bulk"}},
                {"name": "saga_triggers", "position": null, "horizon": null, "lag_seconds": null,
                 "pending": null, "state": "running", "last_error": "boom\nat line 2",
                 "last_applied_at": null, "dead_letters": 0, "rebuildable": false, "rebuild": null}
            ]}),
            "test",
        )
        .unwrap();
        let text = projection_table(&list.items);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NAME"), "{text}");
        assert!(
            lines[1].contains("bulk 01900000-0000-7000-8000-000000000001"),
            "{text}"
        );
        assert!(
            lines[2].contains("not rebuildable") && lines[2].ends_with("boom"),
            "{text}"
        );
    }
}

//! `--wait`: polls a rebuild's or a republish's progress until it ends, with a progress bar
//! over `events_total` on a terminal.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;

use super::client::{decode, Answer, Client, Outcome};
use super::output::duration;

/// How often the progress is read.
const POLL: Duration = Duration::from_millis(500);

/// The fields a rebuild's and a republish's progress share.
#[derive(Debug, Deserialize)]
pub struct Progress {
    pub state: String,
    #[serde(default)]
    pub events_done: u64,
    #[serde(default)]
    pub events_total: u64,
    pub events_per_second: Option<f64>,
    pub eta_seconds: Option<f64>,
}

/// How a job ended, or `None` while it runs.
pub fn ended(state: &str) -> Option<bool> {
    match state {
        "completed" => Some(true),
        "failed" | "cancelled" => Some(false),
        _ => None,
    }
}

/// The bar's text: the state, the engine's rate and its ETA.
pub fn status_line(progress: &Progress) -> String {
    let rate = progress
        .events_per_second
        .map_or_else(|| "-".to_owned(), |r| format!("{r:.0}"));
    format!(
        "{} · {rate} events/s · ETA {}",
        progress.state,
        duration(progress.eta_seconds)
    )
}

/// Polls `path` (a progress document, first seen as `first`) until its state ends; the last
/// answer comes back. The bar shows only when stdout is a terminal and not under `--json`.
pub async fn wait(
    client: &mut Client,
    path: &str,
    label: &str,
    first: Answer,
    json: bool,
) -> Outcome<Answer> {
    let bar = if json || !std::io::stdout().is_terminal() {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(0);
        // The template is a constant: a mistake in it would show in every run, so the
        // default style is a fine fallback.
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix:.bold} [{elapsed_precise}] [{bar:40.cyan/blue}] {pos}/{len} {msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_owned());
        bar
    };
    let mut answer = first;
    loop {
        let progress: Progress = decode(&answer.body, label)?;
        bar.set_length(progress.events_total.max(progress.events_done));
        bar.set_position(progress.events_done);
        bar.set_message(status_line(&progress));
        if ended(&progress.state).is_some() {
            bar.finish_and_clear();
            return Ok(answer);
        }
        tokio::time::sleep(POLL).await;
        answer = client.get(path, &[], label).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_completed_is_a_success() {
        assert_eq!(ended("completed"), Some(true));
        assert_eq!(ended("failed"), Some(false));
        assert_eq!(ended("cancelled"), Some(false));
        for running in ["pending", "bulk", "catching_up", "swapping", "running"] {
            assert_eq!(ended(running), None, "{running}");
        }
    }

    #[test]
    fn the_status_line_carries_rate_and_eta() {
        let progress = Progress {
            state: "bulk".into(),
            events_done: 10,
            events_total: 100,
            events_per_second: Some(1234.4),
            eta_seconds: Some(75.0),
        };
        assert_eq!(status_line(&progress), "bulk · 1234 events/s · ETA 1m15s");
    }
}

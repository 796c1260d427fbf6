//! The run's results: one table on stdout, everything in JSON under `bench/results/`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::stats::Summary;

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: &'static str,
    pub case: String,
    /// Per second (`unit` says of what).
    pub rate: Option<f64>,
    pub unit: &'static str,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    /// The figure divided by its machine limit (or, for history, by its smallest case).
    pub ratio: Option<f64>,
    /// What the ratio is taken against.
    pub ratio_to: Option<&'static str>,
    pub note: String,
}

impl Row {
    pub fn new(scenario: &'static str, case: impl Into<String>, unit: &'static str) -> Self {
        Self {
            scenario,
            case: case.into(),
            rate: None,
            unit,
            p50_ms: None,
            p99_ms: None,
            p999_ms: None,
            ratio: None,
            ratio_to: None,
            note: String::new(),
        }
    }

    /// Rate and latencies from a summary.
    pub fn from_summary(
        scenario: &'static str,
        case: impl Into<String>,
        unit: &'static str,
        s: &Summary,
    ) -> Self {
        Self {
            rate: Some(s.per_second),
            p50_ms: s.p50_ms,
            p99_ms: s.p99_ms,
            p999_ms: s.p999_ms,
            note: s.failures(),
            ..Self::new(scenario, case, unit)
        }
    }

    pub fn ratio(mut self, value: Option<f64>, to: &'static str) -> Self {
        self.ratio = value;
        self.ratio_to = value.map(|_| to);
        self
    }

    pub fn note(mut self, note: impl AsRef<str>) -> Self {
        let note = note.as_ref();
        if !note.is_empty() {
            if !self.note.is_empty() {
                self.note.push_str("; ");
            }
            self.note.push_str(note);
        }
        self
    }
}

/// `figure / limit`, when both are known.
pub fn ratio(figure: f64, limit: Option<f64>) -> Option<f64> {
    limit.filter(|l| *l > 0.0).map(|l| figure / l)
}

/// The machine's limits measured in this run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Limits {
    /// One-row transactions per second through sqlx, best over the connection counts tried.
    pub pg_commits_per_second: Option<f64>,
    /// The same with one connection (one commit at a time).
    pub pg_commits_per_second_1: Option<f64>,
    /// JetStream publishes acknowledged per second, pipelined.
    pub jetstream_acks_per_second: Option<f64>,
}

/// Everything a run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub quick: bool,
    pub machine: BTreeMap<String, Value>,
    pub limits: Limits,
    pub rows: Vec<Row>,
    /// Per scenario, everything measured (the rows' sources and more).
    pub scenarios: BTreeMap<&'static str, Value>,
    /// Scenarios that failed, with why.
    pub errors: BTreeMap<&'static str, String>,
    /// Seconds the read side took, after each scenario, to catch up with its last event.
    pub read_side_drain_seconds: BTreeMap<&'static str, f64>,
    /// Where the read side stood when a scenario ended, for those that left it behind.
    pub read_side_behind: BTreeMap<&'static str, Value>,
}

impl Report {
    pub fn new(quick: bool) -> Self {
        Self {
            started_at: Utc::now(),
            finished_at: None,
            quick,
            machine: BTreeMap::new(),
            limits: Limits::default(),
            rows: Vec::new(),
            scenarios: BTreeMap::new(),
            errors: BTreeMap::new(),
            read_side_drain_seconds: BTreeMap::new(),
            read_side_behind: BTreeMap::new(),
        }
    }

    pub fn row(&mut self, row: Row) {
        eprintln!("    {}", format_row(&row));
        self.rows.push(row);
    }

    pub fn detail(&mut self, scenario: &'static str, detail: impl Serialize) {
        let value = serde_json::to_value(detail).unwrap_or_else(|e| Value::String(e.to_string()));
        self.scenarios.insert(scenario, value);
    }

    /// The table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", header());
        let _ = writeln!(out, "{}", "-".repeat(header().chars().count().max(100)));
        for row in &self.rows {
            let _ = writeln!(out, "{}", format_row(row));
        }
        for (scenario, error) in &self.errors {
            let _ = writeln!(out, "{scenario:<10} FAILED: {error}");
        }
        out
    }

    /// Writes `<dir>/<timestamp>.json`; its path.
    pub fn write(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{}.json", self.started_at.format("%Y%m%dT%H%M%SZ")));
        let json = serde_json::to_vec_pretty(self).context("serialising the report")?;
        std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

fn header() -> String {
    format!(
        "{:<10} {:<40} {:>10} {:<7} {:>8} {:>8} {:>8} {:>7} {:<10} {}",
        "scenario", "case", "rate/s", "of", "p50 ms", "p99 ms", "p999 ms", "ratio", "to", "note"
    )
}

fn number(value: Option<f64>, width: usize, decimals: usize) -> String {
    match value {
        Some(v) => format!("{v:>width$.decimals$}"),
        None => format!("{:>width$}", "-"),
    }
}

fn format_row(row: &Row) -> String {
    let rate_decimals = match row.rate {
        Some(r) if r < 100.0 => 1,
        _ => 0,
    };
    format!(
        "{:<10} {:<40} {} {:<7} {} {} {} {} {:<10} {}",
        row.scenario,
        row.case,
        number(row.rate, 10, rate_decimals),
        row.unit,
        number(row.p50_ms, 8, 2),
        number(row.p99_ms, 8, 2),
        number(row.p999_ms, 8, 2),
        number(row.ratio, 7, 3),
        row.ratio_to.unwrap_or(""),
        row.note
    )
}

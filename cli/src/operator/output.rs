//! How answers are shown: aligned tables (as `kubectl` prints them) for people, the API's JSON
//! untouched for scripts.

use comfy_table::{presets, Table};
use serde_json::Value;

use super::client::Answer;

/// A table with a header, no borders, columns two spaces apart.
pub fn table<const N: usize>(
    header: [&str; N],
    rows: impl IntoIterator<Item = [String; N]>,
) -> String {
    let mut table = Table::new();
    table.load_style(presets::NOTHING).set_header(header);
    for row in rows {
        table.add_row(row);
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table.trim_fmt()
}

/// One record as `FIELD  value` lines.
pub fn fields<'a>(pairs: impl IntoIterator<Item = (&'a str, String)>) -> String {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    for (name, value) in pairs {
        table.add_row([name.to_owned(), value]);
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table.trim_fmt()
}

/// `--json`: the body exactly as the engine sent it.
pub fn print_json(answer: &Answer) {
    println!("{}", answer.text.trim_end());
}

/// An optional value, or `-`.
pub fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A JSON scalar as text, a string without its quotes (ids and versions come as either).
pub fn scalar(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

/// An RFC 3339 instant shortened to the second, UTC (`2025-01-31 12:00:05`).
pub fn instant(value: Option<&str>) -> String {
    match value.and_then(|v| chrono::DateTime::parse_from_rfc3339(v).ok()) {
        Some(at) => at
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string(),
        None => or_dash(value),
    }
}

/// Seconds as `1h02m`, `3m05s`, `12s`, or `-`.
pub fn duration(seconds: Option<f64>) -> String {
    let Some(seconds) = seconds.filter(|s| s.is_finite() && *s >= 0.0) else {
        return "-".to_owned();
    };
    // Whole seconds are all an operator reads off a lag or an ETA.
    let total = seconds.round() as u64;
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s:02}s"),
        _ => format!("{h}h{m:02}m"),
    }
}

/// JSON on one line, cut to `width` characters with `…`.
pub fn compact(value: &Value, width: usize) -> String {
    let text = value.to_string();
    if text.chars().count() <= width {
        return text;
    }
    let cut: String = text.chars().take(width.saturating_sub(1)).collect();
    format!("{cut}…")
}

/// Pretty JSON for a document shown whole (a payload, a folded state).
pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// The hint under a table when the engine has more.
pub fn more(next_cursor: Option<&str>) {
    if let Some(cursor) = next_cursor {
        eprintln!("(more: --cursor {cursor})");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_columns_under_their_headers() {
        let text = table(
            ["NAME", "POSITION"],
            [
                ["orders".to_owned(), "12".to_owned()],
                ["catalog_search".to_owned(), "7".to_owned()],
            ],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let column = lines[0].find("POSITION").unwrap();
        assert_eq!(lines[1].find("12"), Some(column), "{text}");
        assert_eq!(lines[2].find('7'), Some(column), "{text}");
        assert!(lines.iter().all(|l| !l.ends_with(' ')), "{text:?}");
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(Some(4.4)), "4s");
        assert_eq!(duration(Some(185.0)), "3m05s");
        assert_eq!(duration(Some(3720.0)), "1h02m");
        assert_eq!(duration(None), "-");
        assert_eq!(duration(Some(f64::NAN)), "-");
    }

    #[test]
    fn instants_show_to_the_second_in_utc() {
        assert_eq!(
            instant(Some("2025-01-31T13:00:05.123+01:00")),
            "2025-01-31 12:00:05"
        );
        assert_eq!(instant(None), "-");
        assert_eq!(instant(Some("soon")), "soon");
    }

    #[test]
    fn long_payloads_are_cut() {
        let payload = json!({"note": "x".repeat(100)});
        let shown = compact(&payload, 20);
        assert_eq!(shown.chars().count(), 20);
        assert!(shown.ends_with('…'));
        assert_eq!(compact(&json!({"a": 1}), 20), r#"{"a":1}"#);
    }
}

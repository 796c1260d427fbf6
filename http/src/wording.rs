//! How a value that does not fit is told to a person.
//!
//! serde reports a mismatch in its own words ("invalid type: integer `1999`, expected struct
//! Money at line 1 column 37"). Its messages follow a few fixed patterns (`serde::de::Error`'s
//! provided methods), so they are read here, once, and said again in the API's words, naming
//! the field as the client wrote it (`price.amount`, `variants[0].sku`). A message that follows
//! none of them is one of ours (a domain type's `TryFrom`, such as a SKU's) and is kept.

use crate::problem::{pointer_of, FieldError, Location};

/// The field error for serde's `message` about the value at `path` (keys and array indexes)
/// in `location`.
pub fn field_error(location: Location, path: &[String], message: &str) -> FieldError {
    let message = strip_position(message);
    let mut path = path.to_vec();
    let detail = if let Some(field) = quoted(message, "missing field `") {
        path.push(field.to_owned());
        format!("{} is required", name(location, &path))
    } else if let Some(field) = quoted(message, "unknown field `") {
        if path.last().map(String::as_str) != Some(field) {
            path.push(field.to_owned());
        }
        unknown_field(location, field, &path, message)
    } else if let Some(field) = quoted(message, "duplicate field `") {
        if path.last().map(String::as_str) != Some(field) {
            path.push(field.to_owned());
        }
        format!("{} is given twice", name(location, &path))
    } else if let Some(variant) = quoted(message, "unknown variant `") {
        let expected = after(message, ", expected ").unwrap_or("another value");
        format!(
            "{} must be {expected}, not `{variant}`",
            name(location, &path)
        )
    } else if let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
    {
        mismatch(location, &path, rest)
    } else if let Some(rest) = message.strip_prefix("invalid length ") {
        let expected = after(rest, ", expected ").unwrap_or("another length");
        format!("{} must be {expected}", name(location, &path))
    } else {
        custom(location, &path, message)
    };
    let pointer = pointer_of(&path);
    FieldError {
        location,
        pointer,
        detail,
    }
}

/// serde_json's " at line 1 column 37", which means nothing to a person who sent one line.
fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(at) if message[at..].contains(" column ") => &message[..at],
        _ => message,
    }
}

/// The text between `prefix` (at the start of `message`) and the next backtick.
fn quoted<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split_once('`').map(|(quoted, _)| quoted)
}

fn after<'a>(message: &'a str, marker: &str) -> Option<&'a str> {
    message.split_once(marker).map(|(_, rest)| rest)
}

/// The field as a client names it: `price.amount`, `variants[0].sku`; a parameter by its name.
pub fn name(location: Location, path: &[String]) -> String {
    if path.is_empty() {
        return match location {
            Location::Body => "the body".into(),
            Location::Query => "the query".into(),
            Location::Path => "the path".into(),
        };
    }
    let mut name = String::new();
    for segment in path {
        if segment.parse::<usize>().is_ok() && !name.is_empty() {
            name.push_str(&format!("[{segment}]"));
        } else {
            if !name.is_empty() {
                name.push('.');
            }
            name.push_str(segment);
        }
    }
    name
}

fn unknown_field(location: Location, field: &str, path: &[String], message: &str) -> String {
    let parent = &path[..path.len().saturating_sub(1)];
    let mut detail = match location {
        Location::Body if !parent.is_empty() => {
            format!("unknown field `{field}` in {}", name(location, parent))
        }
        Location::Body => format!("unknown field `{field}`"),
        Location::Query | Location::Path => format!("unknown parameter `{field}`"),
    };
    // serde lists the fields it knows: "expected one of `sku`, `name`" or "expected `quantity`".
    if let Some(known) = after(message, "expected one of ").or_else(|| after(message, "expected "))
    {
        detail.push_str(&format!("; the fields here are {known}"));
    }
    detail
}

/// "integer `1999`, expected struct Money": what was sent, and what was expected.
fn mismatch(location: Location, path: &[String], rest: &str) -> String {
    let field = name(location, path);
    let Some((unexpected, expected)) = rest.split_once(", expected ") else {
        return format!("{field} has a value that does not fit");
    };
    let last = path.last().map(String::as_str).unwrap_or_default();
    let unsigned = is_unsigned(expected);
    if unsigned && unexpected.starts_with("integer `-") {
        return format!("{field} must not be negative");
    }
    if (unsigned || is_signed(expected)) && unexpected.starts_with("integer `") {
        return format!("{field} is too large");
    }
    format!(
        "{field} must be {}, not {}",
        expected_text(expected, last),
        sent_text(unexpected)
    )
}

fn is_unsigned(expected: &str) -> bool {
    matches!(expected, "u8" | "u16" | "u32" | "u64" | "u128" | "usize")
}

fn is_signed(expected: &str) -> bool {
    matches!(expected, "i8" | "i16" | "i32" | "i64" | "i128" | "isize")
}

/// serde's name of the expected type, for a person. `last` is the field's own name.
fn expected_text(expected: &str, last: &str) -> String {
    let integer = is_unsigned(expected) || is_signed(expected);
    let text = match expected {
        _ if integer && last == "amount" => "an integer number of minor units (1999 for 19.99)",
        _ if is_unsigned(expected) => "a whole number (0 or more)",
        _ if integer => "an integer",
        "f32" | "f64" => "a number",
        "a string" | "a borrowed string" | "string" | "a character" => "a string",
        "a boolean" => "true or false",
        "a sequence" | "tuple struct" => "an array",
        "a map" | "a JSON object" => "an object",
        "struct Money" => r#"an object such as {"amount": 1999, "currency": "EUR"}"#,
        "unit" => "null",
        "a formatted date and time string or a unix timestamp" => {
            "a date and time such as 2026-01-31T12:00:00Z"
        }
        _ if expected.starts_with("struct ") || expected.starts_with("map") => "an object",
        _ if expected.contains("UUID") => "a UUID",
        _ if expected.starts_with("a tuple") || expected.starts_with("an array") => "an array",
        other => other,
    };
    text.to_owned()
}

/// serde's description of the value sent (`integer `1999``, `string "two"`), for a person.
fn sent_text(unexpected: &str) -> String {
    let value = |prefix: &str| {
        unexpected
            .strip_prefix(prefix)
            .map(|v| v.trim_matches('`').to_owned())
    };
    if let Some(v) = value("integer ") {
        v
    } else if let Some(v) = value("floating point ") {
        v
    } else if let Some(v) = value("boolean ") {
        v
    } else if let Some(v) = value("string ") {
        v
    } else if let Some(v) = value("character ") {
        format!("\"{v}\"")
    } else {
        match unexpected {
            "null" | "unit value" | "unit" | "Option value" => "null".into(),
            "map" => "an object".into(),
            "sequence" => "an array".into(),
            other => other.to_owned(),
        }
    }
}

/// A message of ours (or of a parser such as `str::parse`): kept, with the field named when
/// the message does not begin with it.
fn custom(location: Location, path: &[String], message: &str) -> String {
    let field = name(location, path);
    let last = path.last().map(String::as_str).unwrap_or_default();
    let lower = message.to_ascii_lowercase();
    // What `str::parse` says of a query parameter or path segment.
    let parse = match lower.as_str() {
        "invalid digit found in string"
        | "cannot parse integer from empty string"
        | "number too large to fit in target type"
        | "number too small to fit in target type" => Some("an integer"),
        "invalid float literal" => Some("a number"),
        "provided string was not `true` or `false`" => Some("true or false"),
        _ if lower.starts_with("uuid parsing failed") || lower.starts_with("invalid character") => {
            Some("a UUID")
        }
        _ => None,
    };
    if let Some(expected) = parse {
        return format!("{field} must be {expected}");
    }
    if !last.is_empty() && lower.starts_with(&last.to_ascii_lowercase()) {
        message.to_owned()
    } else {
        format!("{field}: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(path: &[&str], message: &str) -> FieldError {
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        field_error(Location::Body, &path, message)
    }

    #[test]
    fn a_type_mismatch_names_the_field_and_what_it_must_be() {
        let e = body(
            &["price", "amount"],
            "invalid type: string \"19.99\", expected i64 at line 1 column 37",
        );
        assert_eq!(e.pointer, "/price/amount");
        assert_eq!(
            e.detail,
            "price.amount must be an integer number of minor units (1999 for 19.99), not \"19.99\""
        );
        let e = body(
            &["price"],
            "invalid type: integer `1999`, expected struct Money at line 1 column 37",
        );
        assert_eq!(
            e.detail,
            r#"price must be an object such as {"amount": 1999, "currency": "EUR"}, not 1999"#
        );
        let e = body(&["quantity"], "invalid type: string \"two\", expected u32");
        assert_eq!(
            e.detail,
            "quantity must be a whole number (0 or more), not \"two\""
        );
        let e = body(&["quantity"], "invalid value: integer `-1`, expected u32");
        assert_eq!(e.detail, "quantity must not be negative");
        let e = body(
            &["variants", "0", "sku"],
            "invalid type: null, expected a string",
        );
        assert_eq!(e.pointer, "/variants/0/sku");
        assert_eq!(e.detail, "variants[0].sku must be a string, not null");
    }

    #[test]
    fn missing_and_unknown_fields_point_at_the_field() {
        let e = body(&["price"], "missing field `currency`");
        assert_eq!(e.pointer, "/price/currency");
        assert_eq!(e.detail, "price.currency is required");
        let e = body(
            &["colour"],
            "unknown field `colour`, expected one of `sku`, `name`",
        );
        assert_eq!(e.pointer, "/colour");
        assert_eq!(
            e.detail,
            "unknown field `colour`; the fields here are `sku`, `name`"
        );
        let e = body(&[], "unknown field `colour`, expected `quantity`");
        assert_eq!(e.pointer, "/colour");
        let e = body(
            &["role"],
            "unknown variant `wizard`, expected `buyer` or `seller`",
        );
        assert_eq!(e.detail, "role must be `buyer` or `seller`, not `wizard`");
    }

    #[test]
    fn our_own_messages_are_kept_and_parameters_named() {
        let e = body(&["sku"], "SKU `a b` must be 1 to 64 characters");
        assert_eq!(e.detail, "SKU `a b` must be 1 to 64 characters");
        let e = body(&["contact"], "`x` is not an e-mail address");
        assert_eq!(e.detail, "contact: `x` is not an e-mail address");
        let e = field_error(
            Location::Query,
            &["limit".into()],
            "invalid digit found in string",
        );
        assert_eq!(
            (e.pointer.as_str(), e.detail.as_str()),
            ("/limit", "limit must be an integer")
        );
        assert_eq!(body(&["a/b~"], "x").pointer, "/a~1b~0");
    }
}

//! Credentials never leave through the admin routes.
//!
//! Older events hold an account's password hash and an order's payment token. The upcaster
//! chain drops them on read, and the event views show events at their current version, but not
//! everything these routes show went through it: a dead letter is shown as it was parked (by an
//! engine that may have written the older version), and an event this engine cannot bring up
//! (a newer engine's, or a malformed version) is shown as recorded. Operators need neither
//! credential to debug a stream, and a leaked hash can be cracked offline, so every payload and
//! state these routes show still has such fields replaced, at any depth.

use serde_json::Value;

/// Fields whose values are credentials.
const CREDENTIALS: &[&str] = &["password_hash", "payment_token"];

/// What a credential's value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// `value` with every credential field's value replaced by [`REDACTED`].
pub fn credentials(mut value: Value) -> Value {
    redact(&mut value);
    value
}

fn redact(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields.iter_mut() {
                if CREDENTIALS.contains(&name.as_str()) && !field.is_null() {
                    *field = Value::String(REDACTED.to_owned());
                } else {
                    redact(field);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn credentials_are_replaced_at_any_depth_and_nothing_else() {
        let event = json!({"AccountRegistered": {"email": "a@example.com", "password_hash": "$argon2id$x"},
                           "lines": [{"payment_token": "tok_ok"}], "payment_token": null});
        assert_eq!(
            credentials(event),
            json!({"AccountRegistered": {"email": "a@example.com", "password_hash": REDACTED},
                   "lines": [{"payment_token": REDACTED}], "payment_token": null})
        );
    }
}

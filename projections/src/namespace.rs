//! The namespace that prefixes the stream, its subjects and the durable consumers.

use std::fmt;

/// A validated `COMMERCE_NAMESPACE`: one or more of `[A-Za-z0-9_-]`, so that it is a valid stream
/// name, subject token and consumer name at once.
///
/// | what | name |
/// |---|---|
/// | stream | `<NAMESPACE>_EVENTS` (upper-cased) |
/// | subjects | `<namespace>.events.>` |
/// | one event | `<namespace>.events.<aggregate_type>.<aggregate_id>` |
/// | a projection's consumer | `<namespace>_<projection>` |
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Namespace(String);

/// Longest namespace accepted: stream and consumer names must stay well under NATS's limits.
const MAX_LEN: usize = 64;

/// Whether `name` is a valid namespace or projection name.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Namespace {
    /// Validates a namespace.
    pub fn parse(name: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            is_valid_name(name),
            "namespace `{name}` must be 1 to {MAX_LEN} characters of [A-Za-z0-9_-]"
        );
        Ok(Self(name.to_owned()))
    }

    /// The namespace as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The JetStream stream holding every event: `<NAMESPACE>_EVENTS`.
    pub fn stream_name(&self) -> String {
        format!("{}_EVENTS", self.0.to_ascii_uppercase())
    }

    /// The stream's subjects: `<namespace>.events.>`.
    pub fn all_events(&self) -> String {
        format!("{}.events.>", self.0)
    }

    /// Every event of one aggregate type: `<namespace>.events.<aggregate_type>.>`, the usual
    /// filter subject of a projection.
    pub fn aggregate_events(&self, aggregate_type: &str) -> String {
        format!("{}.events.{}.>", self.0, subject_token(aggregate_type))
    }

    /// The subject one event is published on:
    /// `<namespace>.events.<aggregate_type>.<aggregate_id>`.
    ///
    /// Characters a subject token cannot hold (whitespace, `.`, `*`, `>`), `%`, and anything
    /// outside printable ASCII are percent-encoded, so an id never adds or fakes a token.
    /// Consumers read the aggregate from headers, never from the subject.
    pub fn event_subject(&self, aggregate_type: &str, aggregate_id: &str) -> String {
        format!(
            "{}.events.{}.{}",
            self.0,
            subject_token(aggregate_type),
            subject_token(aggregate_id)
        )
    }

    /// The durable consumer of one projection: `<namespace>_<projection>`.
    pub fn consumer_name(&self, projection: &str) -> String {
        format!("{}_{}", self.0, projection)
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One subject token holding `text` verbatim where it can; see [`Namespace::event_subject`].
pub(crate) fn subject_token(text: &str) -> String {
    if text.is_empty() {
        return "%".to_owned();
    }
    let mut token = String::with_capacity(text.len());
    for byte in text.bytes() {
        let plain = byte.is_ascii_graphic() && !matches!(byte, b'.' | b'*' | b'>' | b'%');
        if plain {
            token.push(char::from(byte));
        } else {
            token.push_str(&format!("%{byte:02X}"));
        }
    }
    token
}

/// Whether `subject` matches the NATS subject `filter` (`*` one token, `>` the rest).
pub(crate) fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for filter_token in filter.split('.') {
        match (filter_token, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (expected, Some(actual)) if expected == actual => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_namespace() {
        let ns = Namespace::parse("shop-1").unwrap();
        assert_eq!(ns.stream_name(), "SHOP-1_EVENTS");
        assert_eq!(ns.all_events(), "shop-1.events.>");
        assert_eq!(ns.aggregate_events("order"), "shop-1.events.order.>");
        assert_eq!(ns.event_subject("order", "42"), "shop-1.events.order.42");
        assert_eq!(ns.consumer_name("orders"), "shop-1_orders");
    }

    #[test]
    fn invalid_namespaces_are_refused() {
        for bad in ["", "a.b", "a b", "a*", "a>", "ä", &"x".repeat(65)] {
            assert!(Namespace::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn ids_never_add_subject_tokens() {
        let ns = Namespace::parse("c").unwrap();
        assert_eq!(
            ns.event_subject("inventory", "SKU.1 *>%é"),
            "c.events.inventory.SKU%2E1%20%2A%3E%25%C3%A9"
        );
        assert_eq!(ns.event_subject("cart", ""), "c.events.cart.%");
    }

    #[test]
    fn filters_match_like_nats() {
        assert!(subject_matches("c.events.>", "c.events.order.1"));
        assert!(subject_matches("c.events.order.>", "c.events.order.1"));
        assert!(subject_matches("c.events.*.1", "c.events.order.1"));
        assert!(!subject_matches("c.events.order.>", "c.events.order"));
        assert!(!subject_matches("c.events.order.>", "c.events.cart.1"));
        assert!(!subject_matches("c.events.*", "c.events.order.1"));
        assert!(subject_matches("c.events.order.1", "c.events.order.1"));
    }
}

//! Trace context (OpenTelemetry, W3C Trace Context) as it travels with events.
//!
//! A command appends its events with the `traceparent` (and `tracestate`, if any) of the span
//! that appended them in their [`Metadata`](crate::Metadata); the relay publishes each event
//! with a `traceparent` header of its publish span; projections, saga steps and webhook
//! deliveries take their parent from those. So one checkout is one trace, from the HTTP request
//! to the order being confirmed.
//!
//! Off and free unless a process installs an OpenTelemetry layer and calls [`enable`]: nothing
//! here then allocates or looks anything up (one relaxed atomic load).
//!
//! The W3C format is read and written with [`TraceContextPropagator`] directly: no global
//! propagator needs to be set.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
pub use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use serde_json::Value;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C header (and metadata field) holding the trace and parent span ids.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C header (and metadata field) holding vendor trace state.
pub const TRACESTATE: &str = "tracestate";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns trace propagation on for this process: call it once an OpenTelemetry layer is part of
/// the global subscriber.
pub fn enable() {
    ENABLED.store(true, Ordering::Release);
}

/// Whether [`enable`] was called.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A context's W3C fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceFields {
    pub traceparent: String,
    pub tracestate: Option<String>,
}

impl TraceFields {
    /// The fields of `cx`'s span, when it is valid and sampled.
    pub fn of(cx: &Context) -> Option<Self> {
        let span = cx.span();
        let span_context = span.span_context();
        if !span_context.is_valid() || !span_context.is_sampled() {
            return None;
        }
        let mut fields = Self::default();
        TraceContextPropagator::new().inject_context(cx, &mut fields);
        (!fields.traceparent.is_empty()).then_some(fields)
    }

    /// The context these fields name (a remote parent), if they parse.
    pub fn context(traceparent: &str, tracestate: Option<&str>) -> Option<Context> {
        let carrier = Fields {
            traceparent,
            tracestate,
        };
        let cx = TraceContextPropagator::new().extract(&carrier);
        cx.span().span_context().is_valid().then_some(cx)
    }
}

impl Injector for TraceFields {
    fn set(&mut self, key: &str, value: String) {
        match key {
            TRACEPARENT => self.traceparent = value,
            TRACESTATE if !value.is_empty() => self.tracestate = Some(value),
            _ => {}
        }
    }
}

struct Fields<'a> {
    traceparent: &'a str,
    tracestate: Option<&'a str>,
}

impl Extractor for Fields<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => Some(self.traceparent),
            TRACESTATE => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

/// The fields of the current span, when tracing is on and it is sampled.
pub fn current() -> Option<TraceFields> {
    if !enabled() {
        return None;
    }
    of_span(&tracing::Span::current())
}

/// The fields of `span`, when tracing is on and it is sampled.
pub fn of_span(span: &tracing::Span) -> Option<TraceFields> {
    if !enabled() || span.is_disabled() {
        return None;
    }
    TraceFields::of(&span.context())
}

/// The context named by an event's metadata (`traceparent`, `tracestate`); an empty context
/// (no parent) when it names none.
pub fn context_from_metadata(metadata: &Value) -> Context {
    remote_context(metadata).unwrap_or_default()
}

/// The context named by an event's metadata, if it names one.
pub fn remote_context(metadata: &Value) -> Option<Context> {
    let traceparent = metadata.get(TRACEPARENT)?.as_str()?;
    let tracestate = metadata.get(TRACESTATE).and_then(Value::as_str);
    TraceFields::context(traceparent, tracestate)
}

/// Makes the context named by `metadata` the parent of `span` (which must not have been entered
/// yet). `false` when tracing is off or the metadata names no context.
pub fn set_parent_from_metadata(span: &tracing::Span, metadata: &Value) -> bool {
    if !enabled() {
        return false;
    }
    match remote_context(metadata) {
        Some(cx) => set_parent(span, cx),
        None => false,
    }
}

/// Makes `cx` the parent of `span` (which must not have been entered yet).
pub fn set_parent(span: &tracing::Span, cx: Context) -> bool {
    span.set_parent(cx).is_ok()
}

/// The id of the trace `cx` belongs to (the invalid id when none).
pub fn trace_id(cx: &Context) -> opentelemetry::trace::TraceId {
    cx.span().span_context().trace_id()
}

/// Links `span` to the span of `cx` (another trace it also continues).
pub fn add_link(span: &tracing::Span, cx: &Context) {
    span.add_link(cx.span().span_context().clone());
}

/// Adds the fields of the current span (when tracing is on and it is sampled) to serialised
/// metadata that names no trace yet.
pub(crate) fn stamp(metadata: &mut Value) {
    let Value::Object(map) = metadata else {
        return;
    };
    if map.contains_key(TRACEPARENT) {
        return;
    }
    if let Some(fields) = current() {
        map.insert(TRACEPARENT.to_owned(), Value::String(fields.traceparent));
        if let Some(state) = fields.tracestate {
            map.insert(TRACESTATE.to_owned(), Value::String(state));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn metadata_names_its_context() {
        let cx = context_from_metadata(&json!({ "traceparent": PARENT, "tracestate": "a=b" }));
        let span = cx.span();
        let span_context = span.span_context();
        assert_eq!(
            span_context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(span_context.span_id().to_string(), "00f067aa0ba902b7");
        assert!(span_context.is_remote());
        let fields = TraceFields::of(&cx).unwrap();
        assert_eq!(fields.traceparent, PARENT);
        assert_eq!(fields.tracestate.as_deref(), Some("a=b"));
    }

    #[test]
    fn metadata_without_or_with_a_broken_context_names_none() {
        assert!(remote_context(&json!({ "correlation_id": "x" })).is_none());
        assert!(remote_context(&json!({ "traceparent": "nonsense" })).is_none());
        assert!(!context_from_metadata(&json!({}))
            .span()
            .span_context()
            .is_valid());
    }

    #[test]
    fn nothing_is_stamped_while_tracing_is_off() {
        let mut metadata = json!({ "correlation_id": "x" });
        stamp(&mut metadata);
        assert_eq!(metadata, json!({ "correlation_id": "x" }));
    }
}

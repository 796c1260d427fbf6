//! The trace and span ids on every log line written inside a traced span: `trace_id` and
//! `span_id` fields first in a JSON line, a `trace_id=… span_id=…` prefix otherwise.

use std::sync::OnceLock;

use opentelemetry::trace::TraceContextExt;
use tracing::span;
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// A span's OpenTelemetry ids, as hex.
#[derive(Debug, Clone)]
struct TraceIds {
    trace_id: String,
    span_id: String,
}

/// Notes each span's OpenTelemetry ids when it is first entered (after any parent was set).
/// Goes above the OpenTelemetry layer, as itself (not in an `Option`, which would not pass the
/// dispatch on); does nothing unless `enabled`.
pub struct TraceIdLayer {
    enabled: bool,
    dispatch: OnceLock<tracing::dispatcher::WeakDispatch>,
}

impl TraceIdLayer {
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            dispatch: OnceLock::new(),
        }
    }
}

impl<S> Layer<S> for TraceIdLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_enter(&self, id: &span::Id, ctx: Context<'_, S>) {
        if !self.enabled {
            return;
        }
        let Some(span) = ctx.span(id) else {
            return;
        };
        if span.extensions().get::<TraceIds>().is_some() {
            return;
        }
        let Some(dispatch) = self.dispatch.get().and_then(|weak| weak.upgrade()) else {
            return;
        };
        // Not while holding the span's extensions: this locks them.
        let Some(cx) = tracing_opentelemetry::get_otel_context(id, &dispatch) else {
            return;
        };
        let otel_span = cx.span();
        let context = otel_span.span_context();
        if !context.is_valid() {
            return;
        }
        let ids = TraceIds {
            trace_id: context.trace_id().to_string(),
            span_id: context.span_id().to_string(),
        };
        span.extensions_mut().insert(ids);
    }
}

/// An event format that adds the ids [`TraceIdLayer`] noted to what `inner` writes.
pub struct WithTraceIds<F> {
    inner: F,
    json: bool,
}

impl<F> WithTraceIds<F> {
    /// `json`: `inner` writes one JSON object per line.
    pub fn new(inner: F, json: bool) -> Self {
        Self { inner, json }
    }
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let ids = ctx
            .event_scope()
            .and_then(|mut scope| scope.next())
            .and_then(|span| span.extensions().get::<TraceIds>().cloned());
        let Some(ids) = ids else {
            return self.inner.format_event(ctx, writer, event);
        };
        if !self.json {
            write!(writer, "trace_id={} span_id={} ", ids.trace_id, ids.span_id)?;
            return self.inner.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(
                writer,
                "{{\"trace_id\":\"{}\",\"span_id\":\"{}\",{rest}",
                ids.trace_id, ids.span_id
            ),
            None => writer.write_str(&line),
        }
    }
}

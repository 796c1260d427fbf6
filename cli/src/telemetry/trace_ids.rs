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
        // A span of a trace that is not exported (a polling round) names none.
        if !context.is_valid() || !context.is_sampled() {
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

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(enabled: bool) -> (Vec<serde_json::Value>, Option<(String, String)>) {
        let lines = Lines::default();
        let writer = lines.clone();
        let provider = SdkTracerProvider::builder().build();
        let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        let subscriber = tracing_subscriber::registry()
            .with(enabled.then_some(otel))
            .with(TraceIdLayer::new(enabled))
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .event_format(WithTraceIds::new(
                        tracing_subscriber::fmt::format().json(),
                        true,
                    ))
                    .with_writer(move || writer.clone()),
            );
        let ids = tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside any span");
            let span = tracing::info_span!("work");
            let _entered = span.enter();
            tracing::info!("inside the span");
            let cx = span.context();
            let otel_span = cx.span();
            let context = otel_span.span_context();
            context.is_valid().then(|| {
                (
                    context.trace_id().to_string(),
                    context.span_id().to_string(),
                )
            })
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let lines = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        (lines, ids)
    }

    #[test]
    fn a_line_inside_a_traced_span_names_its_trace_and_span() {
        let (lines, ids) = logged(true);
        let (trace_id, span_id) = ids.unwrap();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].get("trace_id").is_none());
        assert_eq!(lines[1]["trace_id"], trace_id.as_str());
        assert_eq!(lines[1]["span_id"], span_id.as_str());
        assert_eq!(lines[1]["fields"]["message"], "inside the span");
    }

    #[test]
    fn without_traces_lines_are_as_before() {
        let (lines, ids) = logged(false);
        assert!(ids.is_none());
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|line| line.get("trace_id").is_none()));
    }
}

//! Logging (pretty on a terminal, JSON otherwise), traces (OpenTelemetry over OTLP, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set) and the Prometheus recorder.

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer as _};

mod otlp;
mod trace_ids;

pub use trace_ids::{TraceIdLayer, WithTraceIds};

/// The tracer provider, when traces are exported: flushed by [`shutdown_tracing`].
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs the global subscriber: `RUST_LOG` (default `info`), `COMMERCE_LOG_FORMAT`
/// (`json`|`pretty`) and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, an OpenTelemetry layer
/// exporting spans over OTLP (HTTP, protobuf), with every log line carrying its `trace_id` and
/// `span_id`. Without the variable there is no OpenTelemetry layer at all. Call it within the
/// Tokio runtime (the exporter sends on it).
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match std::env::var("COMMERCE_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("pretty") => false,
        _ => !std::io::stdout().is_terminal(),
    };
    let (provider, failure) = match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(endpoint) if !endpoint.trim().is_empty() => match otlp::provider() {
            Ok(provider) => (Some(provider), None),
            Err(error) => (None, Some(error)),
        },
        _ => (None, None),
    };
    let traced = provider.is_some();
    let otel = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("commerce"))
            .with_tracked_inactivity(false)
    });
    let ids = TraceIdLayer::new(traced);
    let fmt = tracing_subscriber::fmt::layer();
    let fmt = if json {
        fmt.json()
            .event_format(WithTraceIds::new(
                tracing_subscriber::fmt::format().json(),
                true,
            ))
            .boxed()
    } else {
        fmt.pretty()
            .event_format(WithTraceIds::new(
                tracing_subscriber::fmt::format().pretty(),
                false,
            ))
            .boxed()
    };
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(otel)
        .with(ids)
        .with(fmt)
        .try_init()
        .is_ok();
    if let Some(error) = failure {
        tracing::error!(error = format!("{error:#}"), "traces are not exported: OTEL_EXPORTER_OTLP_ENDPOINT is set but the exporter could not be built");
    }
    if let (true, Some(provider)) = (installed, provider) {
        commerce_store::trace::enable();
        let _ = PROVIDER.set(provider);
        tracing::info!("exporting traces over OTLP (OTEL_EXPORTER_OTLP_ENDPOINT)");
    }
}

/// Flushes the spans not yet exported and stops the exporter (a no-op when traces are off).
/// Call it once the engine has stopped.
pub async fn shutdown_tracing() {
    let Some(provider) = PROVIDER.get() else {
        return;
    };
    let provider = provider.clone();
    // Shutting down blocks until the exporter's thread has sent the last spans (on this runtime).
    let stopped = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    match stopped {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "flushing the last spans failed"),
        Err(error) => tracing::warn!(%error, "flushing the last spans panicked"),
    }
}

/// Logging for the operator commands: to stderr, so stdout holds only their output, and
/// `warn` unless `RUST_LOG` says otherwise.
pub fn init_cli_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The process-wide Prometheus recorder, installed on first use, with every series described
/// ([`crate::metrics::describe`]).
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let latency = [
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ];
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let handle = match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is installed (a test harness): keep a private one for rendering.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        };
        crate::metrics::describe();
        handle
    })
}

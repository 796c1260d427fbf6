//! The OTLP exporter (HTTP, protobuf) over the engine's own reqwest client: no second HTTP
//! stack, no OpenSSL. Its batch processor exports from a thread of its own; the requests are
//! sent on the Tokio runtime that built it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use anyhow::Context;
use opentelemetry::trace::{Link, SpanKind, TraceId, TraceState};
use opentelemetry::{Context as OtelContext, KeyValue};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{
    Sampler, SamplingDecision, SamplingResult, SdkTracerProvider, ShouldSample,
};
use opentelemetry_sdk::Resource;

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// A tracer provider exporting in batches to `OTEL_EXPORTER_OTLP_ENDPOINT` (the exporter reads
/// the standard `OTEL_EXPORTER_OTLP_*` variables), as service `OTEL_SERVICE_NAME` or `commerce`.
pub(super) fn provider() -> anyhow::Result<SdkTracerProvider> {
    let runtime = tokio::runtime::Handle::try_current()
        .context("traces are exported on the Tokio runtime, and there is none")?;
    let client = reqwest::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .build()
        .context("building the OTLP HTTP client")?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_http_client(OtlpClient { client, runtime })
        .build()
        .context("building the OTLP span exporter")?;
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("commerce");
    }
    Ok(SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(QuietPolls)))
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// Spans that start a trace of their own on every poll, found nothing to do or not: the relay's
/// round (`publish_next`, every 500 ms when idle). Its per-event `relay_publish` spans continue
/// the events' traces and are kept.
const POLLS: &[&str] = &["publish_next"];

/// Samples every trace except those a polling loop starts ([`POLLS`]); a span with a parent
/// follows its parent's decision.
#[derive(Debug, Clone)]
struct QuietPolls;

impl ShouldSample for QuietPolls {
    fn should_sample(
        &self,
        parent_context: Option<&OtelContext>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        if POLLS.contains(&name) {
            return SamplingResult {
                decision: SamplingDecision::Drop,
                attributes: Vec::new(),
                trace_state: TraceState::default(),
            };
        }
        Sampler::AlwaysOn.should_sample(
            parent_context,
            trace_id,
            name,
            span_kind,
            attributes,
            links,
        )
    }
}

/// Sends the exporter's requests with reqwest, on the runtime.
#[derive(Debug)]
struct OtlpClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl HttpClient for OtlpClient {
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let client = self.client.clone();
        let runtime = self.runtime.clone();
        Box::pin(async move {
            let request = reqwest::Request::try_from(request)?;
            let sent = runtime.spawn(async move {
                let response = client.execute(request).await?;
                let mut answer = Response::builder().status(response.status());
                if let Some(headers) = answer.headers_mut() {
                    *headers = response.headers().clone();
                }
                let body = response.bytes().await?;
                Ok::<_, HttpError>(answer.body(body)?)
            });
            sent.await?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(name: &str) -> SamplingDecision {
        QuietPolls
            .should_sample(
                None,
                TraceId::from(7_u128),
                name,
                &SpanKind::Internal,
                &[],
                &[],
            )
            .decision
    }

    #[test]
    fn a_polling_round_starts_no_trace_and_work_does() {
        assert_eq!(decision("publish_next"), SamplingDecision::Drop);
        assert_eq!(decision("request"), SamplingDecision::RecordAndSample);
        assert_eq!(decision("saga"), SamplingDecision::RecordAndSample);
    }
}

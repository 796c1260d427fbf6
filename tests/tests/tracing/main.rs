//! Traces end to end: a checkout is one trace, from `POST /v1/me/cart/checkout` through the
//! store, the relay and NATS, the projections, the saga's steps and the payment gateway, to the
//! order being confirmed and a webhook delivering its confirmation. The spans are kept in memory (`InMemorySpanExporter`) by the global
//! subscriber this binary installs; the engine runs in-process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/cleanup.rs"]
mod cleanup;
#[path = "../api/helpers.rs"]
#[allow(dead_code)]
mod helpers;
#[path = "../support/receiver.rs"]
#[allow(dead_code)]
mod receiver;

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::trace::{TraceId, TracerProvider as _};
use opentelemetry::Value as OtelValue;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use reqwest::StatusCode;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::helpers::spawn_app_with;
use crate::receiver::Receiver;

/// The spans every test of this binary records, and their provider.
fn traces() -> &'static (InMemorySpanExporter, SdkTracerProvider) {
    static TRACES: OnceLock<(InMemorySpanExporter, SdkTracerProvider)> = OnceLock::new();
    TRACES.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("tests"));
        tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("info"))
            .with(otel)
            .try_init()
            .expect("no other global subscriber");
        commerce_store::trace::enable();
        (exporter, provider)
    })
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a OtelValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn has(span: &SpanData, key: &str, value: &str) -> bool {
    attribute(span, key).is_some_and(|v| v.as_str() == value)
}

/// What a trace must hold for a checkout that was confirmed.
fn missing(spans: &[&SpanData]) -> Vec<&'static str> {
    let names: BTreeSet<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    let mut missing = Vec::new();
    for name in [
        "command",
        "append",
        "relay_publish",
        "projection_batch",
        "saga",
        "saga_step",
        "payment_gateway",
        "webhook_delivery",
    ] {
        if !names.contains(name) {
            missing.push(name);
        }
    }
    let step = |step: &str| {
        spans
            .iter()
            .any(|s| s.name == "saga_step" && has(s, "step", step))
    };
    if !step("start") {
        missing.push("saga_step start");
    }
    if !step("confirm_order") {
        missing.push("saga_step confirm_order");
    }
    if !spans
        .iter()
        .any(|s| s.name == "projection_batch" && has(s, "projection", "saga_triggers"))
    {
        missing.push("projection_batch of saga_triggers");
    }
    if !spans
        .iter()
        .any(|s| s.name == "append" && has(s, "aggregate", "checkout_saga"))
    {
        missing.push("append of checkout_saga");
    }
    missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_is_one_trace_from_the_request_to_the_confirmed_order() {
    let (exporter, provider) = traces();
    let app = spawn_app_with(|config| config.webhook_allow_private = true).await;
    let receiver = Receiver::start().await;
    let admin = app.admin_token().await;
    let subscribed = app
        .post(
            "/v1/webhooks",
            Some(&admin),
            serde_json::json!({"url": receiver.url, "event_types": ["order.OrderConfirmed"]}),
        )
        .await;
    assert_eq!(subscribed.status(), StatusCode::CREATED);
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "TRACED-MUG", 1250, 5).await;
    let (_, buyer) = app.account("buyer").await;
    app.add_to_cart(&buyer, "TRACED-MUG", 2).await;
    let order_id = app.checkout(&buyer).await;
    app.wait_for_order(order_id, &buyer, &["confirmed"]).await;

    // The checkout's request span names the trace; the spans of the steps after the
    // confirmation may still be ending, so look again for a while.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (trace_id, trace) = loop {
        provider.force_flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        let request = spans
            .iter()
            .find(|s| has(s, "route", "/v1/me/cart/checkout") && has(s, "method", "POST"));
        if let Some(request) = request {
            assert_eq!(request.name, "POST /v1/me/cart/checkout");
            assert_eq!(
                attribute(request, "status").map(|v| v.as_str().into_owned()),
                Some("202".to_owned())
            );
            let trace_id = request.span_context.trace_id();
            let trace: Vec<&SpanData> = spans
                .iter()
                .filter(|s| s.span_context.trace_id() == trace_id)
                .collect();
            if missing(&trace).is_empty() {
                break (trace_id, spans.clone());
            }
            if tokio::time::Instant::now() >= deadline {
                let names: Vec<String> = trace
                    .iter()
                    .map(|s| format!("{} {:?}", s.name, s.attributes))
                    .collect();
                panic!(
                    "the checkout's trace lacks {:?}; it holds {names:#?}",
                    missing(&trace)
                );
            }
        } else {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no span of the checkout request"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(trace_id, TraceId::INVALID);
    let in_trace = trace
        .iter()
        .filter(|s| s.span_context.trace_id() == trace_id)
        .count();
    assert!(
        in_trace >= 10,
        "only {in_trace} spans in the checkout's trace"
    );

    // Every event of the order and of its saga carries the checkout's trace on.
    let parents: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT metadata->>'traceparent' FROM events \
         WHERE aggregate_type IN ('order', 'checkout_saga') AND aggregate_id = $1 \
         ORDER BY position",
    )
    .bind(order_id.to_string())
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(parents.len() >= 4, "{parents:?}");
    for parent in &parents {
        let parent = parent.as_deref().expect("every event names its trace");
        assert_eq!(
            parent.split('-').nth(1),
            Some(trace_id.to_string().as_str())
        );
    }
}

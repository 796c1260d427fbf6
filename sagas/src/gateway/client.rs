//! [`HttpGateway`]: the [`PaymentGateway`] over the provider's HTTP API.
//!
//! Each call is one POST keyed `Idempotency-Key: {payment_id}:{step}`, the same key on every
//! retry, so a retried call never charges twice. A request gets `request_timeout`; 5xx answers
//! and connection failures are retried with exponential backoff up to `max_attempts`, nothing
//! else is. Only the payment id and the step are logged, never the token.

use std::error::Error as _;
use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use commerce_domain::services::{GatewayError, GatewayFuture, PaymentGateway};
use commerce_domain::{Money, PaymentId};
use reqwest::header::CONTENT_TYPE;
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use tracing::Instrument;

use crate::gateway::wire::{AmountRequest, AuthorizeRequest, Step, IDEMPOTENCY_KEY};

/// How [`HttpGateway`] talks to the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayClientConfig {
    /// How long one request may take, connecting to last byte of the answer (default 10 s).
    /// Past it the call fails with [`GatewayError::Timeout`] and is not retried: it may have
    /// taken effect.
    pub request_timeout: Duration,
    /// Attempts per call, the first included (default 3; 0 counts as 1).
    pub max_attempts: u32,
    /// The pause before the first retry, doubled before each next one (default 100 ms).
    pub initial_backoff: Duration,
}

impl Default for GatewayClientConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
        }
    }
}

/// A payment provider reached over HTTP: the sandbox, or a real one exposing the same API.
#[derive(Debug, Clone)]
pub struct HttpGateway {
    base_url: String,
    http: reqwest::Client,
    config: GatewayClientConfig,
}

impl HttpGateway {
    /// A client for the provider at `base_url` (`http://host:port`, optionally with a path
    /// prefix). Fails on a URL that is not `http://`: this build has no TLS.
    pub fn new(base_url: &str, config: GatewayClientConfig) -> anyhow::Result<Self> {
        let url = Url::parse(base_url)
            .with_context(|| format!("parsing the payment gateway URL `{base_url}`"))?;
        anyhow::ensure!(
            url.scheme() == "http",
            "the payment gateway URL `{base_url}` is not http:// (this build has no TLS)"
        );
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            // A payment POST must not be silently turned into something else.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the payment gateway's HTTP client")?;
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            http,
            config,
        })
    }

    async fn authorize_once(
        &self,
        payment_id: PaymentId,
        amount: Money,
        token: &str,
        within: Duration,
    ) -> Result<String, GatewayError> {
        let body = AuthorizeRequest {
            amount,
            token: token.to_owned(),
        };
        let deadline = tokio::time::Instant::now() + within;
        let response = self
            .post(
                payment_id,
                Step::Authorize,
                Some(encode(&body)?),
                Some(deadline),
            )
            .await?;
        #[derive(Deserialize)]
        struct Authorized {
            authorization_id: String,
        }
        let authorized: Authorized = response.json().await.map_err(unreadable)?;
        Ok(authorized.authorization_id)
    }

    async fn post_amount(
        &self,
        payment_id: PaymentId,
        step: Step,
        amount: Money,
    ) -> Result<(), GatewayError> {
        let body = encode(&AmountRequest { amount })?;
        self.post(payment_id, step, Some(body), None)
            .await
            .map(drop)
    }

    /// POST one step, retrying 5xx answers and connection failures; a 2xx answer, or why not.
    /// With a `deadline`, every attempt gets what is left of it instead of `request_timeout`
    /// (an authorisation waits as long as the payment's deadline allows, not less).
    async fn post(
        &self,
        payment_id: PaymentId,
        step: Step,
        body: Option<Vec<u8>>,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<reqwest::Response, GatewayError> {
        let url = format!(
            "{}/v1/payments/{payment_id}/{}",
            self.base_url,
            step.as_str()
        );
        let key = idempotency_key(payment_id, step);
        let attempts = self.config.max_attempts.max(1);
        let mut backoff = self.config.initial_backoff;
        let mut attempt = 1;
        loop {
            let mut request = self.http.post(&url).header(IDEMPOTENCY_KEY, &key);
            // The provider may continue the trace (W3C Trace Context), when tracing is on.
            if let Some(trace) = commerce_store::trace::current() {
                request = request.header(commerce_store::trace::TRACEPARENT, trace.traceparent);
                if let Some(state) = trace.tracestate {
                    request = request.header(commerce_store::trace::TRACESTATE, state);
                }
            }
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    return Err(GatewayError::Timeout);
                }
                request = request.timeout(left);
            }
            if let Some(body) = &body {
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let failure = match request.send().await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) if response.status().is_server_error() => {
                    format!("the provider answered {}", response.status())
                }
                Ok(response) => return Err(refusal(response).await),
                Err(error) if error.is_timeout() => return Err(GatewayError::Timeout),
                Err(error) if error.is_connect() || error.is_request() => {
                    format!("could not reach the provider: {}", describe(&error))
                }
                Err(error) => return Err(GatewayError::Unavailable(describe(&error))),
            };
            if attempt >= attempts {
                return Err(GatewayError::Unavailable(format!(
                    "{failure} (after {attempt} attempts)"
                )));
            }
            tracing::warn!(attempt, ?backoff, %failure, "payment gateway call failed; retrying");
            metrics::counter!("commerce_payment_gateway_retries_total", "step" => step.as_str())
                .increment(1);
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
            attempt += 1;
        }
    }
}

impl PaymentGateway for HttpGateway {
    fn authorize<'a>(
        &'a self,
        payment_id: PaymentId,
        amount: Money,
        token: &'a str,
        within: Duration,
    ) -> GatewayFuture<'a, String> {
        observed(
            payment_id,
            Step::Authorize,
            self.authorize_once(payment_id, amount, token, within),
        )
    }

    fn capture(&self, payment_id: PaymentId, amount: Money) -> GatewayFuture<'_, ()> {
        observed(
            payment_id,
            Step::Capture,
            self.post_amount(payment_id, Step::Capture, amount),
        )
    }

    fn void(&self, payment_id: PaymentId) -> GatewayFuture<'_, ()> {
        let call = async move {
            self.post(payment_id, Step::Void, None, None)
                .await
                .map(drop)
        };
        observed(payment_id, Step::Void, call)
    }

    fn refund(&self, payment_id: PaymentId, amount: Money) -> GatewayFuture<'_, ()> {
        observed(
            payment_id,
            Step::Refund,
            self.post_amount(payment_id, Step::Refund, amount),
        )
    }
}

/// The key of every attempt of one step of one payment: the provider acts on it once.
fn idempotency_key(payment_id: PaymentId, step: Step) -> String {
    format!("{payment_id}:{}", step.as_str())
}

/// Run `call` in a span naming the payment and step, then log and count how it ended.
fn observed<'a, T: Send + 'a>(
    payment_id: PaymentId,
    step: Step,
    call: impl Future<Output = Result<T, GatewayError>> + Send + 'a,
) -> GatewayFuture<'a, T> {
    let span = tracing::info_span!(
        "payment_gateway",
        otel.kind = "client",
        %payment_id,
        step = step.as_str()
    );
    Box::pin(
        async move {
            let result = call.await;
            let outcome = match &result {
                Ok(_) => "ok",
                Err(GatewayError::Declined(_)) => "declined",
                Err(GatewayError::Timeout) => "timeout",
                Err(GatewayError::Unavailable(_)) => "unavailable",
            };
            metrics::counter!(
                "commerce_payment_gateway_calls_total",
                "step" => step.as_str(),
                "outcome" => outcome
            )
            .increment(1);
            match &result {
                Ok(_) => tracing::debug!("payment gateway call succeeded"),
                Err(error @ GatewayError::Declined(_)) => {
                    tracing::info!(%error, "payment gateway refused")
                }
                Err(error) => tracing::warn!(%error, "payment gateway call failed"),
            }
            result
        }
        .instrument(span),
    )
}

fn encode(body: &impl serde::Serialize) -> Result<Vec<u8>, GatewayError> {
    serde_json::to_vec(body).map_err(|error| {
        GatewayError::Unavailable(format!("could not encode the request: {error}"))
    })
}

/// A non-2xx, non-5xx answer: 402 is a decline, 429 is the provider busy, any other 4xx a refusal
/// retrying will not change.
async fn refusal(response: reqwest::Response) -> GatewayError {
    let status = response.status();
    #[derive(Deserialize)]
    struct Problem {
        reason: Option<String>,
    }
    let reason = response
        .json::<Problem>()
        .await
        .ok()
        .and_then(|problem| problem.reason)
        .unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("no reason given")
                .to_owned()
        });
    match status {
        StatusCode::PAYMENT_REQUIRED => GatewayError::Declined(reason),
        StatusCode::TOO_MANY_REQUESTS => {
            GatewayError::Unavailable(format!("the provider answered {status}: {reason}"))
        }
        status if status.is_client_error() => {
            GatewayError::Declined(format!("the provider refused with {status}: {reason}"))
        }
        status => GatewayError::Unavailable(format!("unexpected answer {status}: {reason}")),
    }
}

/// A failure reading a 2xx answer's body.
fn unreadable(error: reqwest::Error) -> GatewayError {
    if error.is_timeout() {
        GatewayError::Timeout
    } else {
        GatewayError::Unavailable(format!("unreadable answer: {}", describe(&error)))
    }
}

/// The error with its causes (reqwest's own message hides "connection refused" in its source).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_has_its_own_key_derived_from_the_payment() {
        let payment_id: PaymentId = "0190a3c4-0000-7000-8000-000000000001".parse().unwrap();
        assert_eq!(
            idempotency_key(payment_id, Step::Authorize),
            "0190a3c4-0000-7000-8000-000000000001:authorize"
        );
        assert_eq!(
            idempotency_key(payment_id, Step::Void),
            "0190a3c4-0000-7000-8000-000000000001:void"
        );
    }

    #[test]
    fn only_http_urls_are_accepted() {
        let config = GatewayClientConfig::default();
        assert!(HttpGateway::new("http://127.0.0.1:9/", config.clone()).is_ok());
        assert!(HttpGateway::new("https://pay.example", config.clone()).is_err());
        assert!(HttpGateway::new("not a url", config).is_err());
    }
}

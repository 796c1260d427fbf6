//! Rate limiting per caller on every API route, with tower_governor (GCRA, in memory, per
//! process).
//!
//! The caller is the account of a well-signed token when the request carries one (so people
//! behind one address do not share a budget), else the client's IP ([`ClientIp`]). Keying on
//! the signature alone, without the credential read the handler does, keeps a refused request
//! as cheap as possible; a forged token is keyed by IP like an anonymous request.
//!
//! A limited request is answered with 429 problem+json and `Retry-After`, and counted in
//! `commerce_rate_limited_requests_total`. Health and metrics routes are not limited: the
//! engine wires this layer onto the API routes only.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use axum::response::IntoResponse;
use commerce_domain::AccountId;
use tower_governor::governor::{GovernorConfig, GovernorConfigBuilder};
use tower_governor::key_extractor::KeyExtractor;
use tower_governor::{GovernorError, GovernorLayer};

use crate::auth::bearer_token;
use crate::client_ip::ClientIp;
use crate::{ApiError, JwtKeys};

/// The limit every caller gets.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    /// Requests a second a caller may sustain.
    pub per_second: u32,
    /// Requests a caller may send at once above the sustained rate.
    pub burst: u32,
}

/// Who a request is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CallerKey {
    Account(AccountId),
    Ip(IpAddr),
}

/// Finds a request's [`CallerKey`].
#[derive(Clone)]
pub struct CallerKeyExtractor {
    jwt: JwtKeys,
}

impl KeyExtractor for CallerKeyExtractor {
    type Key = CallerKey;

    fn extract<T>(&self, request: &Request<T>) -> Result<CallerKey, GovernorError> {
        if let Some(account) = bearer_token(request.headers()).and_then(|t| self.jwt.subject(t)) {
            return Ok(CallerKey::Account(account));
        }
        Ok(CallerKey::Ip(
            ClientIp::of(request.extensions(), request.headers()).0,
        ))
    }
}

type Config = GovernorConfig<CallerKeyExtractor, governor::middleware::NoOpMiddleware>;

/// The limiter's shared state, to forget idle callers now and then.
#[derive(Clone)]
pub struct Limiter(Arc<Config>);

impl Limiter {
    /// Drops the state of callers whose budget is full again (they would start afresh anyway),
    /// so that the keys of past callers do not pile up.
    pub fn forget_idle_callers(&self) {
        let limiter = self.0.limiter();
        limiter.retain_recent();
        limiter.shrink_to_fit();
    }
}

/// The layer limiting every route it wraps, and its limiter.
pub fn layer(
    limit: RateLimit,
    jwt: JwtKeys,
) -> anyhow::Result<(
    GovernorLayer<CallerKeyExtractor, governor::middleware::NoOpMiddleware, Body>,
    Limiter,
)> {
    anyhow::ensure!(
        limit.per_second >= 1 && limit.burst >= 1,
        "the rate limit needs at least 1 request a second and a burst of at least 1"
    );
    // Governor replenishes one request per period.
    let period = Duration::from_nanos(1_000_000_000 / u64::from(limit.per_second))
        .max(Duration::from_nanos(1));
    let config = GovernorConfigBuilder::default()
        .period(period)
        .burst_size(limit.burst)
        .key_extractor(CallerKeyExtractor { jwt })
        .finish()
        .ok_or_else(|| anyhow::anyhow!("an invalid rate limit: {limit:?}"))?;
    let config = Arc::new(config);
    let layer = GovernorLayer::new(config.clone()).error_handler(too_many);
    Ok((layer, Limiter(config)))
}

fn too_many(error: GovernorError) -> Response<Body> {
    match error {
        GovernorError::TooManyRequests { wait_time, .. } => {
            metrics::counter!("commerce_rate_limited_requests_total").increment(1);
            // Governor rounds the wait down to whole seconds: a wait under one second is 0,
            // which would invite an immediate retry that fails again.
            ApiError::too_many_requests(
                "too many requests from this caller; slow down and retry after the delay",
                wait_time + 1,
            )
            .into_response()
        }
        other => {
            ApiError::internal(anyhow::anyhow!("rate limiting failed: {other}")).into_response()
        }
    }
}

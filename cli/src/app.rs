//! The engine's deployables: the all-in-one process, or one role each (command API, query API,
//! projections with the relay). Every role serves health, metrics and docs on its port.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, Request};
use axum::response::IntoResponse;
use axum::Router;
use commerce_admin_api::AdminState;
use commerce_command_api::CommandState;
use commerce_http::client_ip::{set_client_ip, TrustForwardedFor};
use commerce_http::rate_limit::{self, Limiter};
use commerce_http::{ApiError, JwtKeys};
use commerce_projections::rebuild::{run_rebuilds, RebuildConfig};
use commerce_projections::{
    read_models, run_projections, Namespace, Projection, ProjectionConfig, Relay, RelayConfig,
    SharedProjection,
};
use commerce_query_api::{QueryState, ReadReplica};
use commerce_sagas::gateway::{GatewayClientConfig, HttpGateway, Sandbox, SandboxHandle};
use commerce_sagas::{run_worker, SagaConfig, SagaDriver, SagaTriggers, WorkerConfig};
use commerce_store::credentials::Versions;
use commerce_webhooks::{WebhookFanOut, WebhookState};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::degraded::{self, Health};
use crate::ops::{self, Dependencies};
use crate::telemetry::metrics_handle;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// What one process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Everything: both APIs, the relay and the projections.
    All,
    /// The command routes only.
    CommandApi,
    /// The read routes only.
    QueryApi,
    /// The relay and the projection workers (HTTP serves only health and metrics).
    Projections,
    /// The checkout saga workers (HTTP serves only health and metrics).
    Sagas,
}

impl Role {
    fn commands(self) -> bool {
        matches!(self, Role::All | Role::CommandApi)
    }

    fn queries(self) -> bool {
        matches!(self, Role::All | Role::QueryApi)
    }

    fn background(self) -> bool {
        matches!(self, Role::All | Role::Projections)
    }

    fn sagas(self) -> bool {
        matches!(self, Role::All | Role::Sagas)
    }

    /// Whether the role holds sessions of its own (LISTEN, session advisory locks), and so
    /// needs a direct connection rather than a pooler in transaction mode.
    fn holds_sessions(self) -> bool {
        self.background() || self.sagas()
    }

    /// Connections a process of this role pools when `COMMERCE_DB_POOL` is unset: two processes
    /// of each of the four roles take at most 80 of a stock `max_connections = 100` (see the
    /// README's connection budget), counting what they hold besides: the projections role's
    /// LISTEN sessions (relay, checkpoint follower) come out of its pool, its relay lock (and one
    /// per rebuild it runs) does not; each saga worker's LISTEN session comes out of its pool.
    pub fn default_pool_size(self) -> u32 {
        match self {
            Role::CommandApi => 12,
            Role::QueryApi => 8,
            Role::Projections => 10,
            Role::Sagas => 6,
            // One process on one machine: room enough for everything it runs.
            Role::All => 32,
        }
    }

    /// Connections a process of this role opens outside its pool, at most, while it runs no
    /// rebuild: the active relay's lock session.
    pub fn dedicated_connections(self) -> u32 {
        u32::from(self.background())
    }
}

/// A running engine, bound to its port, not yet serving.
pub struct Application {
    listener: TcpListener,
    router: Router,
    port: u16,
    /// Where clients reach it, as the start-up line prints it.
    url: String,
    role: Role,
    shutdown: CancellationToken,
    pool: PgPool,
    background: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    gateway_url: String,
    /// The in-process sandbox gateway, when no real one is configured.
    _sandbox: Option<SandboxHandle>,
}

#[derive(Clone, Copy)]
struct MakeRequestUuidV7;

impl MakeRequestId for MakeRequestUuidV7 {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        uuid::Uuid::now_v7()
            .to_string()
            .parse()
            .ok()
            .map(RequestId::new)
    }
}

impl Application {
    /// The all-in-one engine.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_role(config, Role::All).await
    }

    /// Connects, migrates, creates the admin account when configured, starts the relay and the
    /// projections when the role runs them, and binds the port.
    pub async fn build_role(config: Config, role: Role) -> anyhow::Result<Self> {
        metrics_handle();
        // Checked before anything is connected: a malformed list stops the start at once.
        let nats_servers = config.nats_servers()?;
        if role.holds_sessions() {
            commerce_store::db::require_direct(
                &config.database_url,
                "the relay, the projections and the saga workers (roles projections, sagas, all)",
            )?;
        }
        let pool_size = config
            .db_pool_size
            .unwrap_or_else(|| role.default_pool_size());
        let pool = commerce_store::db::open(&config.database_url, pool_size).await?;
        let nats = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(&nats_servers)
            .await
            .context("configuring the NATS client")?;

        let namespace = Namespace::parse(&config.namespace).context("COMMERCE_NAMESPACE")?;
        let shutdown = CancellationToken::new();

        let jwt = JwtKeys::new(&config.jwt_secret()?, config.token_ttl_seconds)
            .checking(Versions::new(pool.clone()));
        let jetstream = async_nats::jetstream::new(nats.clone());
        let mut router = Router::new();
        if role.commands() {
            let commands = CommandState::new(pool.clone(), jwt.clone(), config.sign_in_throttle());
            if let (Some(email), Some(password)) = (&config.admin_email, &config.admin_password) {
                commerce_command_api::ensure_admin(&commands, email, password).await?;
            }
            router = router.merge(commerce_command_api::router(commands));
            // The operators' routes change things (rebuilds, retries, republishes): they are
            // served where commands are.
            let admin = AdminState::new(commerce_admin_api::state::Inner {
                pool: pool.clone(),
                jwt: jwt.clone(),
                projections: projections(),
                jetstream: jetstream.clone(),
                namespace: namespace.clone(),
                stream_replicas: config.stream_replicas,
                shutdown: shutdown.clone(),
            });
            router = router.merge(commerce_admin_api::router(admin));
            router = router.merge(commerce_webhooks::router(WebhookState {
                pool: pool.clone(),
                jwt: jwt.clone(),
                allow_private: config.webhook_allow_private,
            }));
        }
        let mut background = Vec::new();
        let mut read_replica = None;
        if role.queries() {
            if let Some(url) = &config.read_database_url {
                let replica = ReadReplica::new(url, pool_size, pool.clone(), config.read_max_lag)?;
                background.push(tokio::spawn(replica.clone().watch(shutdown.clone())));
                read_replica = Some(replica);
            }
            let queries = QueryState::new(
                pool.clone(),
                read_replica.clone(),
                jwt.clone(),
                config.min_position_wait,
            );
            router = router.merge(commerce_query_api::router(queries));
        }
        let mut health = Health {
            nats: nats.clone(),
            nats_outage: Default::default(),
            relay: None,
            read_replica,
        };
        background.push(tokio::spawn(degraded::watch_nats(
            nats.clone(),
            nats_servers.to_string(),
            health.nats_outage.clone(),
            config.outage_error_after,
            shutdown.clone(),
        )));
        // Every API route is limited per caller; health and metrics (merged below) are not.
        let (rate_limit, limiter) = rate_limit::layer(config.rate_limit(), jwt)?;
        let router = router.layer(rate_limit);
        background.push(tokio::spawn(forget_idle_callers(limiter, shutdown.clone())));
        let (gateway_url, sandbox) = match &config.payment_gateway_url {
            Some(url) => (url.clone(), None),
            None => {
                let sandbox =
                    Sandbox::start_with_cancel(([127, 0, 0, 1], 0).into(), shutdown.clone())
                        .await?;
                tracing::info!(url = %sandbox.url(), "serving the sandbox payment gateway in-process");
                (sandbox.url(), Some(sandbox))
            }
        };
        if role.sagas() {
            let gateway = HttpGateway::new(&gateway_url, GatewayClientConfig::default())?;
            let saga_config = SagaConfig {
                payment_timeout: config.payment_timeout,
                return_window: config.return_window,
                steps_per_commit: config.saga_steps_per_commit as usize,
                ..SagaConfig::default()
            };
            let driver = Arc::new(SagaDriver::new(
                pool.clone(),
                Arc::new(gateway),
                saga_config,
            ));
            for _ in 0..config.saga_workers {
                let worker = WorkerConfig::for_payment_timeout(config.payment_timeout);
                background.push(tokio::spawn(run_worker(
                    driver.clone(),
                    worker,
                    shutdown.clone(),
                )));
            }
        }
        if role.background() {
            let relay = Relay::new(pool.clone(), jetstream.clone(), namespace.clone()).with_config(
                RelayConfig {
                    stream_max_age: config.stream_max_age,
                    stream_replicas: config.stream_replicas,
                    outage_error_after: config.outage_error_after,
                    ..RelayConfig::default()
                },
            );
            health.relay = Some(relay.status());
            background.push(tokio::spawn(relay.run(shutdown.clone())));
            background.push(tokio::spawn(run_rebuilds(
                pool.clone(),
                read_models::all(),
                RebuildConfig {
                    batch_size: config.rebuild_batch,
                    ..RebuildConfig::default()
                },
                shutdown.clone(),
            )));
            background.push(tokio::spawn(commerce_webhooks::run_deliveries(
                pool.clone(),
                config.webhook_delivery(),
                shutdown.clone(),
            )));
            let projections = projections();
            let names: Vec<_> = projections.iter().map(|p| p.name()).collect();
            config
                .projection_partitions
                .check(names.iter().copied())
                .context("COMMERCE_PROJECTION_PARTITIONS")?;
            background.push(tokio::spawn(crate::metrics::refresh_gauges(
                pool.clone(),
                names,
                shutdown.clone(),
            )));
            background.push(tokio::spawn(run_projections(
                pool.clone(),
                jetstream,
                namespace,
                projections,
                ProjectionConfig {
                    outage_error_after: config.outage_error_after,
                    partitions: config.projection_partitions.clone(),
                    stream_replicas: config.stream_replicas,
                    ..ProjectionConfig::default()
                },
                shutdown.clone(),
            )));
        }

        let request_id = HeaderName::from_static(commerce_http::request::REQUEST_ID);
        let router = router
            .merge(ops::router(Dependencies {
                pool: pool.clone(),
                health,
            }))
            .merge(commerce_http::problem_types::router())
            .fallback(|| async { ApiError::not_found("no such route").into_response() })
            .layer(axum::middleware::from_fn(
                commerce_http::telemetry::record_request_metrics,
            ))
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .layer(CatchPanicLayer::custom(|_| {
                ApiError::internal(anyhow::anyhow!("a handler panicked")).into_response()
            }))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(commerce_http::telemetry::request_span)
                    .on_response(commerce_http::telemetry::record_status)
                    .on_failure(log_server_error),
            )
            .layer(axum::middleware::from_fn_with_state(
                TrustForwardedFor(config.trust_forwarded_for),
                set_client_ip,
            ))
            .layer(PropagateRequestIdLayer::new(request_id.clone()))
            .layer(SetRequestIdLayer::new(request_id, MakeRequestUuidV7))
            .layer(SetSensitiveRequestHeadersLayer::new([
                header::AUTHORIZATION,
                header::COOKIE,
            ]));

        let listener = TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("binding {}", config.bind))?;
        let address = listener.local_addr()?;
        let port = address.port();
        // Outermost, so that every problem, from any layer, gets an absolute `type`.
        let public_url = match &config.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => commerce_http::problem_types::default_public_url(address),
        };
        let router = router.layer(axum::middleware::from_fn_with_state(
            std::sync::Arc::<str>::from(public_url),
            commerce_http::problem_types::absolute_types,
        ));
        Ok(Self {
            listener,
            router,
            port,
            url: base_url(address),
            role,
            shutdown,
            pool,
            background,
            gateway_url,
            _sandbox: sandbox,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The router, for in-process requests (the demo catalog loader).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The payment gateway this engine talks to.
    pub fn payment_gateway_url(&self) -> &str {
        &self.gateway_url
    }

    /// Cancelling it stops the server gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then drains in-flight requests.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let shutdown = self.shutdown.clone();
        let url = &self.url;
        if self.role.commands() || self.role.queries() {
            tracing::info!(port = self.port, %url, "serving the API at {url}; its documentation at {url}/docs");
        } else {
            tracing::info!(port = self.port, %url, "serving {url}/health/ready and {url}/metrics");
        }
        // The peer address is the client's IP for rate limiting and sign-in throttling.
        let service = self
            .router
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(
            commerce_http::listener::without_delay(self.listener),
            service,
        )
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("serving HTTP")?;
        self.shutdown.cancel();
        for task in self.background {
            match task.await {
                Ok(Err(error)) => {
                    tracing::error!(error = format!("{error:#}"), "a background task failed")
                }
                Err(error) => tracing::error!(%error, "a background task panicked"),
                Ok(Ok(())) => {}
            }
        }
        self.pool.close().await;
        Ok(())
    }
}

/// Logs a 5xx answer: at ERROR, except a 503 (`X-Min-Position` not reached in time, readiness
/// while a dependency is down), which tells the client to come back and is expected, at INFO.
/// A 500's cause is logged at ERROR where it happens ([`ApiError::internal`]); 4xx answers are
/// the client's and are not failures at all.
fn log_server_error(
    class: tower_http::classify::ServerErrorsFailureClass,
    latency: Duration,
    _span: &tracing::Span,
) {
    use tower_http::classify::ServerErrorsFailureClass;
    let latency_ms = latency.as_millis();
    match class {
        ServerErrorsFailureClass::StatusCode(status)
            if status == axum::http::StatusCode::SERVICE_UNAVAILABLE =>
        {
            tracing::info!(%status, latency_ms, "answered 503: not available yet")
        }
        ServerErrorsFailureClass::StatusCode(status) => {
            tracing::error!(%status, latency_ms, "response failed")
        }
        ServerErrorsFailureClass::Error(error) => {
            tracing::error!(%error, latency_ms, "response failed")
        }
    }
}

/// `http://<address>`, with an unspecified address (`0.0.0.0`, `::`) shown as the loopback one
/// so that the line can be pasted into a browser on the same machine.
fn base_url(mut address: std::net::SocketAddr) -> String {
    if address.ip().is_unspecified() {
        address.set_ip(match address {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{address}")
}

/// Every projection the engine runs: the read models, the saga trigger and the webhooks'
/// fan-out.
fn projections() -> Vec<SharedProjection> {
    read_models::all()
        .into_iter()
        .chain([
            SharedProjection::new(SagaTriggers),
            SharedProjection::new(WebhookFanOut),
        ])
        .collect()
}

/// Now and then, drops the rate limiter's state of callers that went quiet.
async fn forget_idle_callers(limiter: Limiter, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = every.tick() => limiter.forget_idle_callers(),
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

/// How long in-flight requests get to finish after a signal.
pub const GRACE: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's connection budget: two processes of each role, at rest and at their pools'
    /// limits, fit a stock `max_connections = 100` with room for operators and migrations.
    #[test]
    fn two_processes_of_each_role_fit_the_connection_budget() {
        const BUDGET: u32 = 80;
        let roles = [
            Role::CommandApi,
            Role::QueryApi,
            Role::Projections,
            Role::Sagas,
        ];
        let per_process: u32 = roles
            .iter()
            .map(|role| role.default_pool_size() + role.dedicated_connections())
            .sum();
        assert_eq!(
            per_process,
            12 + 8 + (10 + 1) + 6,
            "update the README's table"
        );
        assert!(2 * per_process <= BUDGET, "{} > {BUDGET}", 2 * per_process);
    }

    /// The LISTEN sessions come out of the pool: it must leave connections for the work.
    #[test]
    fn pools_leave_room_beyond_the_sessions_they_hold() {
        // The relay's and the checkpoint follower's listeners; one saga worker's.
        assert!(Role::Projections.default_pool_size() >= 2 + 4);
        assert!(Role::Sagas.default_pool_size() > 1 + 4);
        assert!(Role::All.default_pool_size() >= 3 + 8);
    }
}

use std::sync::Arc;

use async_nats::jetstream;
use axum::extract::FromRef;
use commerce_http::JwtKeys;
use commerce_projections::{Namespace, Projection, SharedProjection};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// What the admin handlers share.
#[derive(Clone)]
pub struct AdminState {
    inner: Arc<Inner>,
}

/// The parts of the admin state.
pub struct Inner {
    pub pool: PgPool,
    pub jwt: JwtKeys,
    /// Every projection the engine runs (the read models and the saga trigger): what the
    /// projection list shows, rebuilds start and dead letters are retried through.
    pub projections: Vec<SharedProjection>,
    /// Where a republish publishes.
    pub jetstream: jetstream::Context,
    pub namespace: Namespace,
    /// The stream's replicas, should a republish be the one that creates it.
    pub stream_replicas: usize,
    /// Stops a republish running in this process when the engine shuts down.
    pub shutdown: CancellationToken,
}

impl AdminState {
    pub fn new(inner: Inner) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }
}

impl Inner {
    /// The projection named `name`.
    pub fn projection(&self, name: &str) -> Option<&SharedProjection> {
        self.projections.iter().find(|p| p.name() == name)
    }
}

impl std::ops::Deref for AdminState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl FromRef<AdminState> for JwtKeys {
    fn from_ref(state: &AdminState) -> Self {
        state.inner.jwt.clone()
    }
}

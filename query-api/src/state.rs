use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use commerce_http::JwtKeys;
use sqlx::PgPool;

/// What the read handlers share.
#[derive(Clone)]
pub struct QueryState {
    inner: Arc<Inner>,
}

/// The parts of the query state.
pub struct Inner {
    pub pool: PgPool,
    pub jwt: JwtKeys,
    /// The longest a request with `X-Min-Position` waits for the read models.
    pub max_wait: Duration,
}

impl QueryState {
    pub fn new(pool: PgPool, jwt: JwtKeys, max_wait: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                jwt,
                max_wait,
            }),
        }
    }
}

impl std::ops::Deref for QueryState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl FromRef<QueryState> for JwtKeys {
    fn from_ref(state: &QueryState) -> Self {
        state.inner.jwt.clone()
    }
}

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use commerce_http::{ApiError, JwtKeys};
use serde::Serialize;
use serde_json::Value;
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
    /// The projections' horizons, watched for every request that waits on them.
    pub horizons: commerce_projections::Horizons,
}

impl QueryState {
    pub fn new(pool: PgPool, jwt: JwtKeys, max_wait: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                horizons: commerce_projections::Horizons::new(pool.clone()),
                pool,
                jwt,
                max_wait,
            }),
        }
    }
}

impl QueryState {
    /// `body` as JSON with every personal value in it opened: what the read models hold sealed
    /// (see `commerce_domain::privacy`) is shown to the caller the route already authorised, or
    /// as `"forgotten"`. Opened here, at the last moment, so that forgetting someone takes
    /// effect at once in every read model, and no read model ever holds personal data in the
    /// clear.
    pub async fn reveal(&self, body: &impl Serialize) -> Result<Value, ApiError> {
        let mut document = serde_json::to_value(body).map_err(anyhow::Error::from)?;
        commerce_store::keys::reveal(&self.pool, &mut document).await?;
        Ok(document)
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

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use commerce_http::{ApiError, JwtKeys};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;

use crate::replica::{self, ReadReplica, Trouble};

/// What the read handlers share. A handler reads through [`Reads`], not this: the database a
/// request reads is picked once, for the whole request.
#[derive(Clone)]
pub struct QueryState {
    inner: Arc<Inner>,
}

/// The parts of the query state.
pub struct Inner {
    /// Read when there is no replica or it is not in use; always for the keys that open
    /// personal data.
    pub primary: PgPool,
    /// The primary's horizons, watched for every request that waits on them there.
    pub primary_horizons: commerce_projections::Horizons,
    /// `COMMERCE_READ_DATABASE_URL`'s replica, when configured.
    pub replica: Option<ReadReplica>,
    pub jwt: JwtKeys,
    /// The longest a request with `X-Min-Position` waits for the read models.
    pub max_wait: Duration,
}

impl QueryState {
    pub fn new(
        primary: PgPool,
        replica: Option<ReadReplica>,
        jwt: JwtKeys,
        max_wait: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                primary_horizons: commerce_projections::Horizons::new(primary.clone()),
                primary,
                replica,
                jwt,
                max_wait,
            }),
        }
    }

    /// Where a request starting now reads: the replica while it is in use, else the primary.
    fn reads(&self) -> Reads {
        match self.inner.replica.as_ref().filter(|r| r.in_use()) {
            Some(replica) => Reads {
                pool: replica.pool().clone(),
                horizons: replica.horizons().clone(),
                replica: Some(replica.clone()),
                shared: self.clone(),
            },
            None => Reads {
                pool: self.inner.primary.clone(),
                horizons: self.inner.primary_horizons.clone(),
                replica: None,
                shared: self.clone(),
            },
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

/// One request's view of the read side: the database it reads (the replica or the primary,
/// picked when it starts and kept, so that its `X-Min-Position` wait and its reads see the same
/// one: see [`crate::replica`]) and that database's horizons.
#[derive(Clone)]
pub struct Reads {
    /// Every read model query of the request runs here.
    pub pool: PgPool,
    pub(crate) horizons: commerce_projections::Horizons,
    /// The replica, when `pool` is its.
    replica: Option<ReadReplica>,
    shared: QueryState,
}

impl FromRequestParts<QueryState> for Reads {
    type Rejection = Infallible;

    async fn from_request_parts(_: &mut Parts, state: &QueryState) -> Result<Self, Infallible> {
        Ok(state.reads())
    }
}

impl Reads {
    /// The longest a request with `X-Min-Position` waits for the read models.
    pub fn max_wait(&self) -> Duration {
        self.shared.max_wait
    }

    /// The answer to a read that failed: 503 with `Retry-After` when the replica it ran on went
    /// away (the next requests read the primary) or cancelled it to replay WAL, else a 500.
    pub fn failed(&self, error: impl Into<anyhow::Error>) -> ApiError {
        let error = error.into();
        let trouble = self.replica.as_ref().zip(replica::trouble(&error));
        match trouble {
            Some((replica, Trouble::Unreachable(reason))) => {
                tracing::info!(%reason, "a read failed on the read replica; answered 503");
                replica.lost(reason);
                ApiError::unavailable("the read replica went away; try again", 1)
            }
            Some((_, Trouble::RecoveryConflict)) => ApiError::unavailable(
                "the read replica cancelled the read to apply newer changes; try again",
                1,
            ),
            None => ApiError::internal(error),
        }
    }

    /// `body` as JSON with every personal value in it opened: what the read models hold sealed
    /// (see `commerce_domain::privacy`) is shown to the caller the route already authorised, or
    /// as `"forgotten"`. Opened here, at the last moment, so that forgetting someone takes
    /// effect at once in every read model, and no read model ever holds personal data in the
    /// clear. The keys are read on the primary, even when the read models come from a replica:
    /// a replica's lag must not keep a forgotten person's data readable.
    pub async fn reveal(&self, body: &impl Serialize) -> Result<Value, ApiError> {
        let mut document = serde_json::to_value(body).map_err(anyhow::Error::from)?;
        commerce_store::keys::reveal(&self.shared.primary, &mut document).await?;
        Ok(document)
    }
}

//! The admin gate every route passes first.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use commerce_domain::Role;
use commerce_http::{ApiError, Caller, JwtKeys};

/// A signed-in admin. As the first extractor of a handler it answers 401 or 403 before the
/// path, query or body is read, so other callers learn nothing from validation errors.
#[derive(Debug, Clone, Copy)]
pub struct Admin(pub Caller);

impl<S> FromRequestParts<S> for Admin
where
    JwtKeys: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require(&[Role::Admin])?;
        Ok(Self(caller))
    }
}

//! Bearer tokens: HS256 JWTs carrying the account id and its role.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use commerce_domain::{AccountId, Role};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::ApiError;

/// What a token says.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claims {
    sub: uuid::Uuid,
    role: Role,
    iat: i64,
    exp: i64,
}

/// The signing and verification keys, and how long a token lives.
#[derive(Clone)]
pub struct JwtKeys {
    inner: Arc<Keys>,
}

struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_seconds: i64,
}

impl JwtKeys {
    pub fn new(secret: &[u8], ttl_seconds: i64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            inner: Arc::new(Keys {
                encoding: EncodingKey::from_secret(secret),
                decoding: DecodingKey::from_secret(secret),
                validation,
                ttl_seconds,
            }),
        }
    }

    pub fn ttl_seconds(&self) -> i64 {
        self.inner.ttl_seconds
    }

    /// A token for `account` with `role`, valid for the configured time.
    pub fn issue(&self, account: AccountId, role: Role) -> anyhow::Result<String> {
        self.issue_at(account, role, chrono::Utc::now().timestamp())
    }

    /// A token issued at `iat` (seconds since the epoch); tests use it for expired tokens.
    pub fn issue_at(&self, account: AccountId, role: Role, iat: i64) -> anyhow::Result<String> {
        let claims = Claims {
            sub: account.0,
            role,
            iat,
            exp: iat + self.inner.ttl_seconds,
        };
        Ok(encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.inner.encoding,
        )?)
    }

    fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        use jsonwebtoken::errors::ErrorKind;
        match decode::<Claims>(token, &self.inner.decoding, &self.inner.validation) {
            Ok(data) => Ok(Caller {
                account_id: AccountId(data.claims.sub),
                role: data.claims.role,
            }),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(
                ApiError::unauthorized("the token has expired; sign in again"),
            ),
            Err(_) => Err(ApiError::unauthorized("the token is invalid")),
        }
    }
}

/// The signed-in account making the request.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub account_id: AccountId,
    pub role: Role,
}

impl Caller {
    /// Refuses callers whose role is not among `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(ApiError::forbidden(format!(
                "this needs the role {}",
                names.join(" or ")
            )))
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

impl<S> FromRequestParts<S> for Caller
where
    JwtKeys: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized("sign in: send `Authorization: Bearer <token>`")
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
            })?;
        JwtKeys::from_ref(state).verify(token.trim())
    }
}

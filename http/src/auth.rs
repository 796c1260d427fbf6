//! Bearer tokens: HS256 JWTs carrying the account id, its role, a token id (`jti`) and the
//! account's credential version (`cv`).
//!
//! A good signature is not enough: every authenticated request reads the account's credential
//! version (one primary-key read of `credentials`, `commerce_store::credentials::Versions`) and
//! refuses a token whose account does not exist, was forgotten, or has moved on to another
//! version (a password change or an admin revoke since the token was issued).

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use commerce_domain::{AccountId, Role};
use commerce_store::credentials::Versions;
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
    /// The token's own id, so that one token can be told from another in an audit.
    jti: uuid::Uuid,
    /// The account's credential version when the token was issued.
    cv: i32,
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
    /// What tokens are checked against; without it every token is refused (keys made only to
    /// issue tokens, as tests and the bench do, accept none).
    versions: Option<Versions>,
}

impl JwtKeys {
    /// Keys that issue tokens and check their signature, but accept none until
    /// [`JwtKeys::checking`] says where credential versions are.
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
                versions: None,
            }),
        }
    }

    /// The same keys, accepting tokens whose credential version matches `versions`.
    pub fn checking(self, versions: Versions) -> Self {
        let keys = &self.inner;
        Self {
            inner: Arc::new(Keys {
                encoding: keys.encoding.clone(),
                decoding: keys.decoding.clone(),
                validation: keys.validation.clone(),
                ttl_seconds: keys.ttl_seconds,
                versions: Some(versions),
            }),
        }
    }

    pub fn ttl_seconds(&self) -> i64 {
        self.inner.ttl_seconds
    }

    /// A token for `account` with `role` at its credential `version`, valid for the configured
    /// time.
    pub fn issue(&self, account: AccountId, role: Role, version: i32) -> anyhow::Result<String> {
        self.issue_at(account, role, version, chrono::Utc::now().timestamp())
    }

    /// A token issued at `iat` (seconds since the epoch); tests use it for expired tokens.
    pub fn issue_at(
        &self,
        account: AccountId,
        role: Role,
        version: i32,
        iat: i64,
    ) -> anyhow::Result<String> {
        let claims = Claims {
            sub: account.0,
            role,
            iat,
            exp: iat + self.inner.ttl_seconds,
            jti: uuid::Uuid::now_v7(),
            cv: version,
        };
        Ok(encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.inner.encoding,
        )?)
    }

    fn decode(&self, token: &str) -> Result<Claims, ApiError> {
        use jsonwebtoken::errors::ErrorKind;
        match decode::<Claims>(token, &self.inner.decoding, &self.inner.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(
                ApiError::unauthorized("the token has expired; sign in again"),
            ),
            Err(_) => Err(ApiError::unauthorized("the token is invalid")),
        }
    }

    /// The account of a well-signed, unexpired token, without asking whether it is still good:
    /// what the rate limiter keys on (it must not cost a database read per request).
    pub fn subject(&self, token: &str) -> Option<AccountId> {
        self.decode(token).ok().map(|claims| AccountId(claims.sub))
    }

    /// The caller a token names, when its signature holds and its account is still at the
    /// credential version the token was issued at.
    async fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let claims = self.decode(token)?;
        let account_id = AccountId(claims.sub);
        let Some(versions) = &self.inner.versions else {
            return Err(ApiError::unauthorized("the token is invalid"));
        };
        match versions.current(account_id).await? {
            Some(current) if current == claims.cv => Ok(Caller {
                account_id,
                role: claims.role,
            }),
            // Unknown or forgotten account, a password change or a revoke: the same answer
            // for each, so a token says nothing about what happened to its account.
            _ => Err(ApiError::unauthorized(
                "the token is no longer valid; sign in again",
            )),
        }
    }
}

/// The bearer token of a request, when it sends one.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// 403 for a caller of role `role` on a route for `roles`: "this route is for buyers; you are
/// signed in as a seller".
pub fn wrong_role(roles: &[Role], role: Role) -> ApiError {
    let plural = |r: &Role| format!("{}s", r.as_str());
    let who = match roles {
        [] => "nobody".to_owned(),
        [one] => plural(one),
        [first @ .., last] => format!(
            "{} and {}",
            first.iter().map(plural).collect::<Vec<_>>().join(", "),
            plural(last)
        ),
    };
    let article = if role == Role::Admin { "an" } else { "a" };
    ApiError::forbidden(format!(
        "this route is for {who}; you are signed in as {article} {}",
        role.as_str()
    ))
}

/// The signed-in account making the request.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub account_id: AccountId,
    pub role: Role,
}

impl Caller {
    /// Refuses callers whose role is not among `roles`, in the one wording every route uses.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(wrong_role(roles, self.role))
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
        JwtKeys::from_ref(state).verify(token.trim()).await
    }
}

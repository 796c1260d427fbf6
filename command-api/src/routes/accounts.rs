//! Registration, sign-in (throttled), password changes, and the bootstrap admin.

use std::sync::Arc;

use anyhow::Context;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::State;
use axum::http::StatusCode;
use commerce_domain::account::{valid_name, Account, AccountCommand};
use commerce_domain::privacy::Sealed;
use commerce_domain::values::{Validate, Violations};
use commerce_domain::{AccountId, Email, InvalidValue, Role};
use commerce_http::{ApiError, ApiJson, Caller, ClientIp, RequestContext, ValidJson};
use commerce_store::credentials::{self, PasswordHash as StoredHash};
use commerce_store::throttle::SignInKeys;
use commerce_store::{claims, keys, Claim, Metadata};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::errors::seal_error;
use crate::pipeline::{run, CommandRequest, Reply};
use crate::CommandState;

/// A new account. Anyone may register as a buyer or a seller.
#[derive(Debug, eserde::Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub email: String,
    /// 8 to 128 characters.
    pub password: String,
    pub name: String,
    /// `buyer` or `seller`.
    pub role: Role,
}

/// The registered account.
#[derive(Debug, Serialize, ToSchema)]
pub struct Registered {
    pub account_id: AccountId,
}

/// Credentials to exchange for a token.
#[derive(Debug, eserde::Deserialize, ToSchema)]
pub struct TokenRequest {
    pub email: String,
    pub password: String,
}

/// A new password, given with the current one.
#[derive(Debug, eserde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    /// 8 to 128 characters.
    pub new_password: String,
}

/// A bearer token.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: i64,
}

impl Validate for RegisterRequest {
    fn violations(&self) -> Violations {
        let mut violations = Violations::default();
        violations.check(&["email"], Email::parse(&self.email));
        violations.check(&["password"], check_password(&self.password));
        violations.check(&["name"], valid_name(&self.name));
        if self.role == Role::Admin {
            violations.add(
                &["role"],
                "role must be `buyer` or `seller`; admins are made by operators",
            );
        }
        violations
    }
}

impl Validate for PasswordChange {
    fn violations(&self) -> Violations {
        let mut violations = Violations::default();
        violations.check(&["new_password"], check_password(&self.new_password));
        violations
    }
}

/// A password is 8 to 128 characters. Passwords never reach the domain: the rule is the API's.
fn check_password(password: &str) -> Result<(), InvalidValue> {
    let length = password.chars().count();
    if !(8..=128).contains(&length) {
        return Err(InvalidValue(format!(
            "password must be 8 to 128 characters, not {length}"
        )));
    }
    Ok(())
}

/// Hashes off the async threads: argon2 is deliberately slow.
async fn hash_password(password: String) -> anyhow::Result<StoredHash> {
    let phc = tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
    })
    .await
    .context("the hashing task")??;
    StoredHash::new(phc)
}

/// Verifies off the async threads. A missing hash is checked against a dummy one (with the
/// same argon2 parameters) so that an unknown e-mail takes as long as a wrong password.
async fn verify_password(password: String, hash: Option<StoredHash>) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || {
        const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2Jx9kZ7Ygq0b0M3fWcX9dY8z3cQ8r1n0Hc6f2g4bQkE";
        let known = hash.is_some();
        let hash = hash.map_or_else(|| DUMMY.to_owned(), |h| h.as_str().to_owned());
        let parsed = PasswordHash::new(&hash).map_err(|e| anyhow::anyhow!("a stored hash is malformed: {e}"))?;
        Ok(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && known)
    })
    .await
    .context("the verifying task")?
}

async fn register_account(
    state: &CommandState,
    request: &CommandRequest,
    account_id: AccountId,
    email: Email,
    name: String,
    role: Role,
    password: String,
) -> Result<Reply, ApiError> {
    let name = valid_name(&name).map_err(|e| ApiError::invalid_field("/name", e.to_string()))?;
    let password_hash = hash_password(password).await?;
    // Personal data enters the account's events sealed under its own key.
    let key = keys::key_for(state.pool(), account_id.0)
        .await
        .map_err(seal_error)?;
    let command = AccountCommand::Register {
        email: Sealed::seal(&key, account_id.0, email.as_str()).map_err(anyhow::Error::from)?,
        name: Sealed::seal(&key, account_id.0, &name).map_err(anyhow::Error::from)?,
        role,
    };
    let respond = Arc::new(move |_: &Account| {
        let mut response = Reply::stored(
            StatusCode::CREATED,
            Some(json!({ "account_id": account_id })),
        );
        response.location = Some(format!("/v1/accounts/{account_id}"));
        response
    });
    // The hash goes beside the account's first event, in its transaction, never into it.
    let claims = vec![
        Claim::Email { email, account_id },
        Claim::Credentials {
            account_id,
            password_hash,
        },
    ];
    run(
        state,
        &state.accounts,
        &account_id.to_string(),
        command,
        request,
        claims,
        respond,
    )
    .await
}

/// Register an account.
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", request_body = RegisterRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "retries with the same key and body return the first response")),
    responses(
        (status = 201, description = "registered", body = Registered),
        (status = 400, description = "malformed JSON", body = commerce_http::problem::Problem),
        (status = 409, description = "the e-mail is taken", body = commerce_http::problem::Problem),
        (status = 422, description = "invalid field", body = commerce_http::problem::Problem),
    ))]
pub async fn register(
    State(state): State<CommandState>,
    context: RequestContext,
    ValidJson(body): ValidJson<RegisterRequest>,
) -> Result<Reply, ApiError> {
    let hash_input = json!({ "email": body.email, "name": body.name, "role": body.role });
    let request = CommandRequest::new(context, None, "POST /v1/accounts", &hash_input);
    if let Some(reply) = request.previous_reply(&state).await? {
        return Ok(reply);
    }
    // `ValidJson` has checked every field.
    let email = Email::parse(&body.email).map_err(|e| ApiError::invalid_field("/email", e.0))?;
    let account_id = AccountId::new();
    register_account(
        &state,
        &request,
        account_id,
        email,
        body.name,
        body.role,
        body.password,
    )
    .await
}

/// Exchange an e-mail and password for a bearer token.
#[utoipa::path(post, path = "/v1/auth/token", tag = "accounts", request_body = TokenRequest,
    description = "Failed attempts are throttled per client IP and per IP and e-mail: after a few \
        free failures each one blocks further attempts for a delay that doubles (429 with \
        `Retry-After`). An unknown e-mail and a wrong password are answered alike.",
    responses(
        (status = 200, description = "signed in", body = TokenResponse),
        (status = 401, description = "wrong e-mail or password", body = commerce_http::problem::Problem),
        (status = 429, description = "too many failed attempts; retry after `Retry-After` seconds", body = commerce_http::problem::Problem),
    ))]
pub async fn token(
    State(state): State<CommandState>,
    ip: ClientIp,
    ApiJson(body): ApiJson<TokenRequest>,
) -> Result<axum::Json<TokenResponse>, ApiError> {
    let keys = SignInKeys::new(ip.0, &body.email);
    throttled(&state, &keys).await?;
    let account = match Email::parse(&body.email) {
        Ok(email) => match claims::account_by_email(state.pool(), &email).await? {
            Some(id) => credentials::for_sign_in(state.pool(), id)
                .await?
                .map(|sign_in| (id, sign_in)),
            None => None,
        },
        Err(_) => None,
    };
    // The same work, and the same count, whether the e-mail is unknown or the password wrong.
    let hash = account.as_ref().map(|(_, s)| s.password_hash.clone());
    let verified = verify_password(body.password, hash).await?;
    let Some((account_id, sign_in)) = account.filter(|_| verified) else {
        return Err(wrong_credentials(&state, &keys).await);
    };
    let role = state
        .accounts
        .load(&account_id.to_string())
        .await?
        .state
        .role
        .ok_or_else(|| anyhow::anyhow!("account {account_id} has credentials but no role"))?;
    state.sign_in_throttle.succeeded(&keys).await?;
    let access_token = state.jwt.issue(account_id, role, sign_in.version)?;
    Ok(axum::Json(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: state.jwt.ttl_seconds(),
    }))
}

/// 429 while the throttle blocks one of the attempt's keys.
async fn throttled(state: &CommandState, keys: &SignInKeys) -> Result<(), ApiError> {
    match state.sign_in_throttle.blocked_for(keys).await? {
        Some(wait) => Err(ApiError::too_many_requests(
            "too many failed sign-in attempts; retry after the delay",
            wait.as_secs_f64().ceil() as u64,
        )),
        None => Ok(()),
    }
}

/// Counts the failure, and answers as for any wrong e-mail or password.
async fn wrong_credentials(state: &CommandState, keys: &SignInKeys) -> ApiError {
    if let Err(error) = state.sign_in_throttle.failed(keys).await {
        return ApiError::internal(error);
    }
    ApiError::unauthorized("wrong e-mail or password")
}

/// Change the caller's password. Every token issued before (this one included) stops working.
#[utoipa::path(post, path = "/v1/me/password", tag = "accounts", request_body = PasswordChange,
    security(("bearer" = [])),
    description = "The current password is checked as sign-in checks it, throttled alike. On \
        success every token issued to the account so far is refused (401): sign in again with \
        the new password.",
    responses(
        (status = 204, description = "changed; earlier tokens are refused from now on"),
        (status = 401, description = "no valid token, or the current password is wrong", body = commerce_http::problem::Problem),
        (status = 409, description = "the credentials changed meanwhile (another change or a revoke)", body = commerce_http::problem::Problem),
        (status = 422, description = "the new password breaks the rules", body = commerce_http::problem::Problem),
        (status = 429, description = "too many failed attempts; retry after `Retry-After` seconds", body = commerce_http::problem::Problem),
    ))]
pub async fn change_password(
    State(state): State<CommandState>,
    caller: Caller,
    ip: ClientIp,
    ValidJson(body): ValidJson<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    // Keyed by the account id: the token proves who is asking, and a stolen token must not
    // become an unthrottled oracle for the account's password.
    let keys = SignInKeys::new(ip.0, &caller.account_id.to_string());
    throttled(&state, &keys).await?;
    let Some(current) = credentials::for_sign_in(state.pool(), caller.account_id).await? else {
        return Err(ApiError::unauthorized("the account can no longer sign in"));
    };
    if !verify_password(body.current_password, Some(current.password_hash)).await? {
        return Err(wrong_credentials(&state, &keys).await);
    }
    state.sign_in_throttle.succeeded(&keys).await?;
    let hash = hash_password(body.new_password).await?;
    match credentials::change_password(state.pool(), caller.account_id, current.version, &hash)
        .await?
    {
        Some(_) => {
            tracing::info!(account_id = %caller.account_id, "password changed; earlier tokens revoked");
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(ApiError::conflict(
            "the account's credentials changed meanwhile; sign in again and retry",
        )),
    }
}

/// What [`create_admin`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAccount {
    /// A new admin account.
    Created(AccountId),
    /// An admin with that e-mail was there already; nothing changed.
    Existing(AccountId),
}

/// Why [`create_admin`] refused.
#[derive(Debug)]
pub enum AdminRefusal {
    /// The e-mail or the password breaks the rules registration applies.
    Invalid(String),
    /// The e-mail belongs to a buyer or a seller: an account never changes role.
    NotAnAdmin(AccountId),
    /// The store failed.
    Failed(anyhow::Error),
}

impl std::fmt::Display for AdminRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid(detail) => f.write_str(detail),
            Self::NotAnAdmin(id) => write!(
                f,
                "the e-mail belongs to account {id}, which is not an admin"
            ),
            Self::Failed(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for AdminRefusal {}

impl From<anyhow::Error> for AdminRefusal {
    fn from(e: anyhow::Error) -> Self {
        Self::Failed(e)
    }
}

/// Creates an admin account unless an admin with that e-mail exists (idempotent), with the
/// same e-mail and password rules as `POST /v1/accounts`. The bootstrap at start and
/// `commerce admin create` both come through here.
pub async fn create_admin(
    state: &CommandState,
    email: &str,
    password: &str,
    name: &str,
) -> Result<AdminAccount, AdminRefusal> {
    let email = Email::parse(email).map_err(|e| AdminRefusal::Invalid(e.0))?;
    check_password(password).map_err(|e| AdminRefusal::Invalid(e.0))?;
    if let Some(existing) = existing_admin(state, &email).await? {
        return existing;
    }
    let context = RequestContext {
        correlation_id: Metadata::new(None).correlation_id,
        idempotency_key: None,
        if_match: None,
    };
    let request = CommandRequest::new(context, None, "bootstrap admin", &email);
    let account_id = AccountId::new();
    match register_account(
        state,
        &request,
        account_id,
        email.clone(),
        name.to_owned(),
        Role::Admin,
        password.to_owned(),
    )
    .await
    {
        Ok(_) => {
            tracing::info!(email = email.as_str(), "created the admin account");
            Ok(AdminAccount::Created(account_id))
        }
        // Another process claimed the e-mail at the same moment: whatever it created decides.
        Err(e) if e.status() == StatusCode::CONFLICT => {
            match existing_admin(state, &email).await? {
                Some(existing) => existing,
                None => Err(anyhow::anyhow!("the e-mail was claimed but holds no account").into()),
            }
        }
        Err(e) => Err(anyhow::anyhow!(
            "creating the admin account failed with status {}: {}",
            e.status(),
            e.detail()
        )
        .into()),
    }
}

/// The account holding `email`, as [`create_admin`] answers for it; `None` when there is none.
async fn existing_admin(
    state: &CommandState,
    email: &Email,
) -> anyhow::Result<Option<Result<AdminAccount, AdminRefusal>>> {
    let Some(id) = claims::account_by_email(state.pool(), email).await? else {
        return Ok(None);
    };
    let account = state.accounts.load(&id.to_string()).await?.state;
    Ok(Some(if account.role == Some(Role::Admin) {
        Ok(AdminAccount::Existing(id))
    } else {
        Err(AdminRefusal::NotAnAdmin(id))
    }))
}

/// Creates the admin account named by the configuration when no account holds that e-mail.
pub async fn ensure_admin(state: &CommandState, email: &str, password: &str) -> anyhow::Result<()> {
    match create_admin(state, email, password, "Administrator").await {
        Ok(_) => Ok(()),
        // Refusing to start would lock the operator out for a reason they cannot fix from here.
        Err(AdminRefusal::NotAnAdmin(id)) => {
            tracing::warn!(account_id = %id, "COMMERCE_ADMIN_EMAIL belongs to an account that is not an admin");
            Ok(())
        }
        Err(AdminRefusal::Invalid(detail)) => {
            anyhow::bail!("COMMERCE_ADMIN_EMAIL/COMMERCE_ADMIN_PASSWORD: {detail}")
        }
        Err(AdminRefusal::Failed(e)) => Err(e),
    }
}

//! Accounts: the caller's own (`GET /v1/me`) and one by id (`GET /v1/accounts/{id}`, the
//! `Location` of a registration), for that account and admins only.

use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, Utc};
use commerce_domain::AccountId;
use commerce_http::{ApiError, ApiPath, Caller};
use serde::Serialize;
use serde_json::Value;
use sqlx::FromRow;
use utoipa::ToSchema;

use super::projections::ACCOUNTS;
use crate::consistency::{resource, MinPosition};
use crate::Reads;

/// An account as its holder and admins see it.
#[derive(Debug, Serialize, FromRow, ToSchema)]
pub struct AccountView {
    pub account_id: uuid::Uuid,
    /// The e-mail address; `"forgotten"` once the account was forgotten.
    #[schema(value_type = String)]
    pub email: Value,
    /// `"forgotten"` once the account was forgotten.
    #[schema(value_type = String)]
    pub name: Value,
    /// `buyer`, `seller` or `admin`.
    pub role: String,
    pub registered_at: DateTime<Utc>,
    /// When the account was forgotten (its personal data erased); absent while it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forgotten_at: Option<DateTime<Utc>>,
}

fn not_found(id: AccountId) -> ApiError {
    ApiError::not_found(format!("account {id} does not exist"))
}

/// The account `id` as its response, opened for a caller already allowed to see it.
async fn account_response(
    state: &Reads,
    id: AccountId,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let account: Option<AccountView> = sqlx::query_as(
        "SELECT account_id, email, name, role, registered_at, forgotten_at FROM rm_accounts \
         WHERE account_id = $1",
    )
    .bind(id.0)
    .fetch_optional(&state.pool)
    .await
    .map_err(|error| state.failed(error))?;
    let account = account.ok_or_else(|| not_found(id))?;
    // Opened at the last moment.
    Ok(resource(headers, &state.reveal(&account).await?))
}

/// The signed-in account: `account_id`, `email`, `name`, `role`.
#[utoipa::path(get, path = "/v1/me", tag = "accounts", security(("bearer" = [])),
    params(("X-Min-Position" = Option<i64>, Header, description = "wait until the accounts read model has applied this position (e.g. the registration's)")),
    responses((status = 200, description = "the caller's account", body = AccountView),
              (status = 304, description = "unchanged since the ETag sent in If-None-Match"),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem)))]
pub async fn me(
    state: Reads,
    caller: Caller,
    min: MinPosition,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    min.wait(&state, &[ACCOUNTS]).await?;
    account_response(&state, caller.account_id, &headers).await
}

/// An account: the caller's own, or any for an admin (the `Location` of `POST /v1/accounts`).
#[utoipa::path(get, path = "/v1/accounts/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = AccountId, Path), ("X-Min-Position" = Option<i64>, Header, description = "wait until the accounts read model has applied this position (e.g. the registration's)")),
    responses((status = 200, description = "the account", body = AccountView),
              (status = 304, description = "unchanged since the ETag sent in If-None-Match"),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 404, description = "no such account, or not yours", body = commerce_http::problem::Problem)))]
pub async fn account(
    state: Reads,
    caller: Caller,
    min: MinPosition,
    headers: HeaderMap,
    ApiPath(id): ApiPath<AccountId>,
) -> Result<Response, ApiError> {
    // Anyone but the account and admins is answered as for an account that does not exist,
    // so that ids cannot be probed.
    if !caller.is_admin() && caller.account_id != id {
        return Err(not_found(id));
    }
    min.wait(&state, &[ACCOUNTS]).await?;
    account_response(&state, id, &headers).await
}

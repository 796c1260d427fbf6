//! The right to be forgotten: a person erases their personal data (`DELETE /v1/me`), or an
//! admin does it for them (`POST /v1/admin/accounts/{id}/forget`).
//!
//! Personal data is sealed in events under a key per person (`commerce_domain::privacy`);
//! forgetting destroys that key, in the same transaction as the account's `AccountForgotten`
//! event, and releases the e-mail. Events are never changed or deleted: every reader shows
//! the person's sealed values as `"forgotten"` from then on, in every read model, after any
//! replay or rebuild. The account can no longer sign in and its tokens are refused.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use commerce_domain::account::{Account, AccountCommand};
use commerce_domain::{AccountId, Role};
use commerce_http::{ApiError, ApiPath, Caller, RequestContext};
use commerce_store::Claim;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::pipeline::{run, CommandRequest, Reply};
use crate::CommandState;

/// The account whose personal data is erased.
#[derive(Debug, Serialize, ToSchema)]
pub struct Forgotten {
    pub account_id: AccountId,
    /// Always `true`.
    pub forgotten: bool,
}

/// Forget me: erase my personal data and close my account.
#[utoipa::path(delete, path = "/v1/me", tag = "accounts", security(("bearer" = [])),
    responses(
        (status = 202, description = "forgotten: the account's personal data reads `\"forgotten\"` everywhere; it can no longer sign in", body = Forgotten),
        (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
    ))]
pub async fn forget_me(
    State(state): State<CommandState>,
    caller: Caller,
    context: RequestContext,
) -> Result<Reply, ApiError> {
    forget(&state, caller, caller.account_id, context, "DELETE /v1/me").await
}

/// Forget an account (admins): erase its personal data and close it.
#[utoipa::path(post, path = "/v1/admin/accounts/{id}/forget", tag = "admin", security(("bearer" = [])),
    params(("id" = AccountId, Path)),
    responses(
        (status = 202, description = "forgotten", body = Forgotten),
        (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
        (status = 403, description = "not an admin", body = commerce_http::problem::Problem),
        (status = 404, description = "no such account", body = commerce_http::problem::Problem),
    ))]
pub async fn forget_account(
    State(state): State<CommandState>,
    caller: Caller,
    context: RequestContext,
    ApiPath(id): ApiPath<AccountId>,
) -> Result<Reply, ApiError> {
    caller.require(&[Role::Admin])?;
    let route = format!("POST /v1/admin/accounts/{id}/forget");
    forget(&state, caller, id, context, &route).await
}

async fn forget(
    state: &CommandState,
    caller: Caller,
    account_id: AccountId,
    context: RequestContext,
    route: &str,
) -> Result<Reply, ApiError> {
    let request = CommandRequest::new(context, Some(caller), route, &account_id);
    let respond = Arc::new(move |_: &Account| {
        Reply::stored(
            StatusCode::ACCEPTED,
            Some(json!(Forgotten {
                account_id,
                forgotten: true
            })),
        )
    });
    run(
        state,
        &state.accounts,
        &account_id.to_string(),
        AccountCommand::Forget,
        &request,
        vec![Claim::Forgotten { account_id }],
        respond,
    )
    .await
}

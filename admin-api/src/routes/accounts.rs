//! Accounts: revoking every token an account holds.

use axum::extract::State;
use axum::http::StatusCode;
use commerce_domain::AccountId;
use commerce_http::{ApiError, ApiPath};
use commerce_store::credentials;
use uuid::Uuid;

use crate::{Admin, AdminState};

/// Revokes every token issued to the account so far (a stolen token, a lost device): they are
/// refused (401) from the next request on. The account can still sign in with its password.
#[utoipa::path(post, path = "/v1/admin/accounts/{id}/revoke", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "the account")),
    responses((status = 204, description = "every earlier token of the account is refused from now on"),
              (status = 400, description = "the id is not a UUID", body = commerce_http::problem::Problem),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "not an admin", body = commerce_http::problem::Problem),
              (status = 404, description = "no such account", body = commerce_http::problem::Problem)))]
pub async fn revoke(
    Admin(admin): Admin,
    State(state): State<AdminState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    let account_id = AccountId(id);
    if !credentials::revoke(&state.pool, account_id).await? {
        return Err(ApiError::not_found(format!("no account {id}")));
    }
    tracing::info!(%account_id, admin = %admin.account_id, "revoked the account's tokens");
    Ok(StatusCode::NO_CONTENT)
}

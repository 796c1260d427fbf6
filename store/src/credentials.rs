//! Credentials: an account's password hash and its credential version, kept in the
//! `credentials` table beside the events, never in them.
//!
//! The row is written with the account's first event, in the same transaction, as a claim
//! ([`crate::Claim::Credentials`]). Every token carries the credential version it was issued
//! at; a password change, an admin revoke and a forget bump it, which refuses every earlier
//! token at its next request ([`Versions::current`]). A forgotten account keeps its row, without
//! a hash: it can never sign in again and its old tokens stay refused.

use std::fmt;

use anyhow::Context;
use commerce_domain::AccountId;
use sqlx::{PgPool, Postgres, Transaction};

/// An argon2 PHC string. Its `Debug` never shows it, so no log line or error can carry it.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps an argon2 PHC string; anything else is refused, so a password never lands here.
    pub fn new(phc: String) -> anyhow::Result<Self> {
        anyhow::ensure!(phc.starts_with("$argon2"), "not an argon2 hash");
        Ok(Self(phc))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

/// What signing in needs of an account that can sign in.
#[derive(Debug, Clone)]
pub struct SignIn {
    pub password_hash: PasswordHash,
    pub version: i32,
}

/// Writes a new account's credentials; `Ok(false)` when the account already has a row.
pub(crate) async fn insert(
    tx: &mut Transaction<'_, Postgres>,
    account_id: AccountId,
    password_hash: &PasswordHash,
) -> anyhow::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO credentials (account_id, password_hash) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(account_id.0)
    .bind(password_hash.as_str())
    .execute(&mut **tx)
    .await
    .context("writing an account's credentials")?;
    Ok(inserted.rows_affected() == 1)
}

/// The hash and version of an account that can sign in; `None` for an unknown, forgotten or
/// password-less account.
pub async fn for_sign_in(pool: &PgPool, account_id: AccountId) -> anyhow::Result<Option<SignIn>> {
    let row: Option<(String, i32)> = sqlx::query_as(
        "SELECT password_hash, credential_version FROM credentials \
         WHERE account_id = $1 AND forgotten_at IS NULL AND password_hash IS NOT NULL",
    )
    .bind(account_id.0)
    .fetch_optional(pool)
    .await
    .context("reading an account's credentials")?;
    row.map(|(hash, version)| {
        Ok(SignIn {
            password_hash: PasswordHash::new(hash).context("a stored password hash")?,
            version,
        })
    })
    .transpose()
}

/// Replaces the password of an account still at credential `version`, bumping the version so
/// that every earlier token is refused: the new version, or `None` when the account was
/// forgotten or its credentials changed meanwhile (a concurrent change or revoke wins).
pub async fn change_password(
    pool: &PgPool,
    account_id: AccountId,
    version: i32,
    password_hash: &PasswordHash,
) -> anyhow::Result<Option<i32>> {
    sqlx::query_scalar(
        "UPDATE credentials \
         SET password_hash = $3, credential_version = credential_version + 1, updated_at = now() \
         WHERE account_id = $1 AND credential_version = $2 AND forgotten_at IS NULL \
         RETURNING credential_version",
    )
    .bind(account_id.0)
    .bind(version)
    .bind(password_hash.as_str())
    .fetch_optional(pool)
    .await
    .context("changing a password")
}

/// Refuses every token issued to the account so far (it can still sign in): `false` when no
/// account has that id.
pub async fn revoke(pool: &PgPool, account_id: AccountId) -> anyhow::Result<bool> {
    let revoked = sqlx::query(
        "UPDATE credentials SET credential_version = credential_version + 1, updated_at = now() \
         WHERE account_id = $1",
    )
    .bind(account_id.0)
    .execute(pool)
    .await
    .context("revoking an account's tokens")?;
    Ok(revoked.rows_affected() == 1)
}

/// Forgets an account's credentials in the caller's transaction: the hash is erased, the
/// account can no longer sign in, and every token issued to it is refused. `false` when no
/// account has that id. Forgetting again is harmless (the first `forgotten_at` stays).
pub async fn forget(
    tx: &mut Transaction<'_, Postgres>,
    account_id: AccountId,
) -> anyhow::Result<bool> {
    let forgotten = sqlx::query(
        "UPDATE credentials \
         SET password_hash = NULL, forgotten_at = coalesce(forgotten_at, now()), \
             credential_version = credential_version + 1, updated_at = now() \
         WHERE account_id = $1",
    )
    .bind(account_id.0)
    .execute(&mut **tx)
    .await
    .context("forgetting an account's credentials")?;
    Ok(forgotten.rows_affected() == 1)
}

/// The credential versions tokens are checked against, one primary-key read per request.
#[derive(Clone)]
pub struct Versions {
    pool: PgPool,
}

impl Versions {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The version a token of the account must carry; `None` when no account has that id or
    /// it was forgotten, so that no token of it is good.
    pub async fn current(&self, account_id: AccountId) -> anyhow::Result<Option<i32>> {
        sqlx::query_scalar(
            "SELECT credential_version FROM credentials \
             WHERE account_id = $1 AND forgotten_at IS NULL",
        )
        .bind(account_id.0)
        .fetch_optional(&self.pool)
        .await
        .context("reading an account's credential version")
    }
}

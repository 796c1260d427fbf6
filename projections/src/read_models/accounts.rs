//! `accounts`: each account's role, e-mail and name (`rm_accounts`), as `GET /v1/me` and
//! `GET /v1/accounts/{id}` show them.
//!
//! The e-mail and the name stay as the events hold them, sealed for the account (see
//! `commerce_domain::privacy`): the query routes open them per response. Once the account is
//! forgotten its row holds `"forgotten"` in their place, so that not even a value written before
//! personal data was sealed (in the clear, in an old event) outlives the forget here.

use anyhow::Context;
use commerce_domain::account::AccountEvent;
use commerce_domain::privacy::FORGOTTEN;
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{Projection, StoredEvent};

/// The `accounts` projection.
pub struct Accounts;

impl Projection for Accounts {
    fn name(&self) -> &'static str {
        "accounts"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["account"]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_accounts"]
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
        apply(conn, event).await
    }
}

async fn apply(db: &mut PgConnection, event: &StoredEvent) -> anyhow::Result<()> {
    let account_id: Uuid = event
        .aggregate_id
        .parse()
        .context("an account id is a UUID")?;
    match event.decode().context("decoding an account event")? {
        AccountEvent::AccountRegistered { email, name, role } => {
            sqlx::query(
                "INSERT INTO rm_accounts (account_id, role, email, name, registered_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(account_id)
            .bind(role.as_str())
            // Sealed as the event holds them: opened when a response is built.
            .bind(json!(email))
            .bind(json!(name))
            .bind(event.recorded_at)
            .execute(&mut *db)
            .await?;
        }
        AccountEvent::AccountForgotten => {
            let done = sqlx::query(
                "UPDATE rm_accounts SET email = $2, name = $2, forgotten_at = $3 \
                 WHERE account_id = $1",
            )
            .bind(account_id)
            .bind(json!(FORGOTTEN))
            .bind(event.recorded_at)
            .execute(&mut *db)
            .await?;
            anyhow::ensure!(
                done.rows_affected() == 1,
                "account {account_id} was forgotten but has no row"
            );
        }
    }
    Ok(())
}

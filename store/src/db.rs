//! Connecting to Postgres: create the database when missing, pool connections, migrate.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgPool};

/// Where the database is when `DATABASE_URL` does not say.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/commerce";

/// `DATABASE_URL`, or the default.
pub fn database_url_from_env() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

/// `url` naming database `name` instead (a test's own database, or `postgres` to administer).
pub fn with_database(url: &str, name: &str) -> String {
    let (without_query, query) = url
        .split_once('?')
        .map_or((url, None), |(u, q)| (u, Some(q)));
    let prefix = without_query
        .rfind('/')
        .map_or(without_query, |slash| &without_query[..slash]);
    match query {
        Some(query) => format!("{prefix}/{name}?{query}"),
        None => format!("{prefix}/{name}"),
    }
}

/// Creates the database named in `url` if it does not exist yet.
pub async fn create_database_if_missing(url: &str) -> anyhow::Result<()> {
    let options = PgConnectOptions::from_str(url).context("parsing DATABASE_URL")?;
    let name = options.get_database().unwrap_or("postgres").to_owned();
    let mut admin = options
        .database("postgres")
        .disable_statement_logging()
        .connect()
        .await
        .context("connecting to the `postgres` database to create ours")?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .context("looking for the database")?;
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        if let Err(error) = admin
            .execute(format!("CREATE DATABASE {quoted}").as_str())
            .await
        {
            // Another process may have created it in between.
            let duplicate =
                error.as_database_error().and_then(|e| e.code()).as_deref() == Some("42P04");
            if !duplicate {
                return Err(error).context("creating the database");
            }
        }
        tracing::info!(database = %name, "created the database");
    }
    admin.close().await.ok();
    Ok(())
}

/// A pool whose sessions cannot hold a transaction open for long: an idle open transaction
/// would stall the relay's commit-order horizon.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url)
        .context("parsing DATABASE_URL")?
        .options([
            ("idle_in_transaction_session_timeout", "10s"),
            ("lock_timeout", "5s"),
        ])
        .disable_statement_logging();
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .context("connecting to Postgres")
}

/// A pool on a read replica, for reads only, named `application_name` (it shows in the
/// replica's `pg_stat_activity`). Connected lazily, so that the engine starts, and reads the
/// primary, while the replica is down; a connection that cannot be had within
/// `acquire_timeout` is an error at once rather than a request held for the primary pool's 10 s.
pub fn connect_read_replica(
    url: &str,
    max_connections: u32,
    application_name: &str,
    acquire_timeout: Duration,
) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url)
        .context("parsing COMMERCE_READ_DATABASE_URL")?
        .application_name(application_name)
        .disable_statement_logging();
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .connect_lazy_with(options))
}

/// Applies every migration in `migrations/` that has not run yet.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::migrate!("../migrations")
        .run(pool)
        .await
        .context("migrating the database")
}

//! Connecting to Postgres: create the database when missing, pool connections, migrate.
//!
//! A `DATABASE_URL` reaches Postgres directly, or through a pooler in transaction mode
//! (PgBouncer) when it carries `pgbouncer=true` ([`Route`]): this module is the one place that
//! tells them apart. Through a pooler every transaction may run on another server session, so
//! nothing may rely on session state: the pool caches no prepared statement (and the patched
//! sqlx of `vendor/` keeps each statement within one round trip), sends no startup `options`
//! (PgBouncer refuses them), and neither creates nor migrates the database (the migrator holds a
//! session advisory lock): it waits for a role with a direct connection to have migrated it.

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

/// The query parameter that marks a `DATABASE_URL` as going through a pooler in transaction
/// mode (the name other tools use for the same thing).
pub const POOLER_FLAG: &str = "pgbouncer";

/// Every session's bounds: an idle open transaction would stall the relay's commit-order
/// horizon, and a statement queued behind a lock would hold its connection for as long.
const SESSION_SETTINGS: [(&str, &str); 2] = [
    ("idle_in_transaction_session_timeout", "10s"),
    ("lock_timeout", "5s"),
];

/// How a connection string reaches Postgres.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Each connection is a server session of its own, for as long as it lives: session state
    /// (LISTEN, session advisory locks, prepared statements) holds.
    Direct,
    /// A pooler in transaction mode (`pgbouncer=true` on the URL): only a transaction keeps its
    /// server session.
    TransactionPooler,
}

impl Route {
    /// The route `url` takes. A `pgbouncer` parameter other than `true` or `false` is refused.
    pub fn of(url: &str) -> anyhow::Result<Self> {
        Ok(split_pooler_flag(url)?.1)
    }
}

/// `url` without its `pgbouncer` parameter (sqlx would warn about a parameter it does not know),
/// and the route it names. Errors never quote the URL: it may carry a password.
fn split_pooler_flag(url: &str) -> anyhow::Result<(String, Route)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), Route::Direct));
    };
    let mut route = Route::Direct;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != POOLER_FLAG {
            kept.push(pair);
            continue;
        }
        route = match value {
            "true" => Route::TransactionPooler,
            "false" => Route::Direct,
            _ => anyhow::bail!("DATABASE_URL: `{POOLER_FLAG}` must be `true` or `false`"),
        };
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, route))
}

/// Fails when `url` goes through a pooler: `what` needs a session of its own.
pub fn require_direct(url: &str, what: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        Route::of(url)? == Route::Direct,
        "{what} needs a direct connection to Postgres (a session of its own: LISTEN, advisory \
         locks); give it a DATABASE_URL without `{POOLER_FLAG}=true`"
    );
    Ok(())
}

/// The engine's pool on `url`, ready to use. Directly, the database is created when missing
/// and migrated. Through a pooler, the pool waits until a role with a direct connection (the
/// projections or sagas roles, or `commerce migrate`) has migrated it.
pub async fn open(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    match Route::of(url)? {
        Route::Direct => {
            create_database_if_missing(url).await?;
            let pool = connect(url, max_connections).await?;
            migrate(&pool).await?;
            Ok(pool)
        }
        Route::TransactionPooler => {
            let pool = connect(url, max_connections).await?;
            wait_for_schema(&pool).await?;
            Ok(pool)
        }
    }
}

/// Creates the database named in `url` if it does not exist yet (through a direct connection:
/// a pooler knows only the databases it was told about).
pub async fn create_database_if_missing(url: &str) -> anyhow::Result<()> {
    require_direct(url, "creating and migrating the database")?;
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
///
/// Directly, each session is given [`SESSION_SETTINGS`] as startup options. Through a pooler it
/// cannot be (PgBouncer refuses startup parameters it does not track, and could not apply them
/// to the server sessions it hands out anyway): the sessions get them from the database's own
/// defaults, which [`migrate`] sets.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(connect_options(url, "DATABASE_URL")?)
        .await
        .context("connecting to Postgres")
}

/// How the engine's sessions on `url` (named `variable` in errors) are opened, for the route
/// the URL takes.
fn connect_options(url: &str, variable: &str) -> anyhow::Result<PgConnectOptions> {
    let (url, route) = split_pooler_flag(url)?;
    let options = PgConnectOptions::from_str(&url)
        .with_context(|| format!("parsing {variable}"))?
        .disable_statement_logging();
    Ok(match route {
        Route::Direct => options.options(SESSION_SETTINGS),
        // No named statement may outlive a transaction, and no startup parameter PgBouncer
        // would refuse (`extra_float_digits` is not one it tracks).
        Route::TransactionPooler => options.statement_cache_capacity(0).extra_float_digits(None),
    })
}

/// A pool on a read replica, for reads only, named `application_name` (it shows in the
/// replica's `pg_stat_activity`); it may go through a pooler as `DATABASE_URL` may. Connected
/// lazily, so that the engine starts, and reads the primary, while the replica is down; a
/// connection that cannot be had within `acquire_timeout` is an error at once rather than a
/// request held for the primary pool's 10 s.
pub fn connect_read_replica(
    url: &str,
    max_connections: u32,
    application_name: &str,
    acquire_timeout: Duration,
) -> anyhow::Result<PgPool> {
    let options =
        connect_options(url, "COMMERCE_READ_DATABASE_URL")?.application_name(application_name);
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .connect_lazy_with(options))
}

/// Applies every migration in `migrations/` that has not run yet, on a direct connection's pool
/// (the migrator holds a session advisory lock). First it makes [`SESSION_SETTINGS`] the
/// database's defaults, so that a role waiting for the schema finds them in place.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    set_session_defaults(pool).await?;
    sqlx::migrate!("../migrations")
        .run(pool)
        .await
        .context("migrating the database")
}

/// `ALTER DATABASE … SET` each of [`SESSION_SETTINGS`] that is not the database's default yet:
/// the only way they reach the server sessions a pooler opens. Serialised by a transaction
/// advisory lock (two processes altering one database's settings at once fail with "tuple
/// concurrently updated"). Without the privilege (not the database's owner) it warns: direct
/// sessions still get them as startup options.
async fn set_session_defaults(pool: &PgPool) -> anyhow::Result<()> {
    /// A key of its own among the engine's advisory locks.
    const LOCK: i64 = 0x3a5c_1f0e_9b7d_4c21;
    let mut tx = pool.begin().await.context("setting the session defaults")?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOCK)
        .execute(&mut *tx)
        .await
        .context("locking the database's settings")?;
    let current: Vec<String> = sqlx::query_scalar(
        "SELECT unnest(setconfig) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase \
         WHERE d.datname = current_database() AND s.setrole = 0",
    )
    .fetch_all(&mut *tx)
    .await
    .context("reading the database's settings")?;
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut *tx)
        .await
        .context("naming the database")?;
    let quoted = format!("\"{}\"", database.replace('"', "\"\""));
    for (name, value) in SESSION_SETTINGS {
        if current
            .iter()
            .any(|setting| *setting == format!("{name}={value}"))
        {
            continue;
        }
        // Names and values are this module's constants, not input.
        let alter = format!("ALTER DATABASE {quoted} SET {name} = '{value}'");
        if let Err(error) = tx.execute(alter.as_str()).await {
            let denied =
                error.as_database_error().and_then(|e| e.code()).as_deref() == Some("42501");
            if !denied {
                return Err(error).context("setting the database's session defaults");
            }
            tracing::warn!(
                setting = name,
                "not the database's owner: {name} is not its default, so sessions through a \
                 pooler (pgbouncer=true) go without it"
            );
            return Ok(());
        }
    }
    tx.commit().await.context("setting the session defaults")
}

/// Waits until the schema this build expects is in place (its latest migration applied), for a
/// pool that must not migrate. Logged once when waiting starts, then every 30 s.
async fn wait_for_schema(pool: &PgPool) -> anyhow::Result<()> {
    let latest = sqlx::migrate!("../migrations")
        .iter()
        .map(|migration| migration.version)
        .max()
        .unwrap_or_default();
    let started = std::time::Instant::now();
    let mut next_warning = Duration::ZERO;
    loop {
        let applied: Result<bool, sqlx::Error> = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM _sqlx_migrations WHERE version = $1 AND success)",
        )
        .bind(latest)
        .fetch_one(pool)
        .await;
        let problem = match applied {
            Ok(true) => break,
            Ok(false) => "its latest migration is not applied yet".to_owned(),
            Err(error)
                if error.as_database_error().and_then(|e| e.code()).as_deref() == Some("42P01") =>
            {
                "it is not migrated yet".to_owned()
            }
            Err(error) => format!("{error}"),
        };
        if started.elapsed() >= next_warning {
            tracing::warn!(
                migration = latest,
                problem,
                "waiting for the schema: DATABASE_URL goes through a pooler, so this role does \
                 not migrate; a role with a direct connection (projections, sagas, or `commerce \
                 migrate`) does"
            );
            next_warning += Duration::from_secs(30);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    check_session_defaults(pool).await
}

/// Warns when a pooled session lacks [`SESSION_SETTINGS`]: the database has no such defaults
/// (migrated without the privilege), or the pooler's server session predates them.
async fn check_session_defaults(pool: &PgPool) -> anyhow::Result<()> {
    for (name, value) in SESSION_SETTINGS {
        let current: String = sqlx::query_scalar("SELECT current_setting($1)")
            .bind(name)
            .fetch_one(pool)
            .await
            .context("reading the session's settings")?;
        if current != value {
            tracing::warn!(
                setting = name,
                expected = value,
                current,
                "a session through the pooler lacks the engine's setting; make it the database's \
                 default (`commerce migrate` as its owner), then RECONNECT on PgBouncer's console"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pooler_flag_is_read_and_taken_off_the_url() {
        let (url, route) =
            split_pooler_flag("postgres://app:secret@bouncer:6432/commerce?pgbouncer=true")
                .unwrap();
        assert_eq!(route, Route::TransactionPooler);
        assert_eq!(url, "postgres://app:secret@bouncer:6432/commerce");

        let (url, route) = split_pooler_flag(
            "postgres://bouncer:6432/commerce?sslmode=require&pgbouncer=true&application_name=x",
        )
        .unwrap();
        assert_eq!(route, Route::TransactionPooler);
        assert_eq!(
            url,
            "postgres://bouncer:6432/commerce?sslmode=require&application_name=x"
        );
    }

    #[test]
    fn without_the_flag_the_route_is_direct() {
        for url in [
            DEFAULT_DATABASE_URL,
            "postgres://db:5432/commerce?sslmode=require",
            "postgres://db:5432/commerce?pgbouncer=false",
        ] {
            assert_eq!(Route::of(url).unwrap(), Route::Direct, "{url}");
        }
    }

    #[test]
    fn a_flag_that_is_neither_true_nor_false_is_refused_without_quoting_the_url() {
        for url in [
            "postgres://app:secret@bouncer/commerce?pgbouncer=yes",
            "postgres://app:secret@bouncer/commerce?pgbouncer",
        ] {
            let error = Route::of(url).unwrap_err().to_string();
            assert!(error.contains("pgbouncer"), "{error}");
            assert!(!error.contains("secret"), "{error}");
        }
    }

    #[test]
    fn roles_that_hold_sessions_refuse_a_pooler() {
        let pooled = "postgres://bouncer:6432/commerce?pgbouncer=true";
        assert!(require_direct(pooled, "the relay").is_err());
        assert!(require_direct(DEFAULT_DATABASE_URL, "the relay").is_ok());
    }
}

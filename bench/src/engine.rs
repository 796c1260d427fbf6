//! The engine under test: started in this process on its own runtime (so the load generator's
//! tasks never queue behind the engine's), on 127.0.0.1:0, with a database and a JetStream
//! namespace of its own, both removed when it stops.

use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use commerce::{Application, Config};
use commerce_http::JwtKeys;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgConnection, PgPool};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Signs the buyers' and sellers' tokens this harness mints for itself (and, given to the
/// engine processes of the scale-out run, theirs).
pub const JWT_SECRET: &str = "commerce-bench-secret-only-for-a-throwaway-engine";
/// How long a minted token lives: longer than any run.
const TOKEN_TTL_SECONDS: i64 = 24 * 3600;

/// How to start the engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The server Postgres runs on; the database name in it is replaced by a fresh one.
    pub database_url: String,
    pub nats_url: String,
    /// Worker threads of the engine's runtime.
    pub threads: usize,
    /// Connections in the engine's pool.
    pub db_pool: u32,
    pub saga_workers: usize,
    /// What the engine runs: everything, or one role (to see a path without the rest).
    pub role: commerce::app::Role,
}

/// A running engine and what the harness needs to reach around its API: its database and NATS.
pub struct Engine {
    pub base_url: String,
    /// A small pool of the harness's own on the engine's database.
    pub pool: PgPool,
    pub database: String,
    /// The engine's database.
    pub database_url: String,
    pub namespace: String,
    pub jetstream: async_nats::jetstream::Context,
    pub nats: async_nats::Client,
    pub jwt: JwtKeys,
    options: EngineOptions,
    shutdown: CancellationToken,
    finished: oneshot::Receiver<anyhow::Result<()>>,
    scratch_databases: Mutex<Vec<String>>,
    scratch_streams: Mutex<Vec<String>>,
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let (without_query, query) = url
        .split_once('?')
        .map_or((url, None), |(u, q)| (u, Some(q)));
    let slash = without_query
        .rfind('/')
        .filter(|&i| i > "postgres://".len())
        .with_context(|| format!("`{url}` names no database"))?;
    let prefix = &without_query[..slash];
    Ok(match query {
        Some(query) => format!("{prefix}/{name}?{query}"),
        None => format!("{prefix}/{name}"),
    })
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Engine {
    /// Starts an engine on a fresh database and namespace; returns once it listens.
    pub async fn start(options: EngineOptions) -> anyhow::Result<Self> {
        let id = Uuid::new_v4().simple().to_string();
        let database = format!("commerce_bench_{id}");
        let namespace = format!("bench_{}", &id[..12]);
        let database_url = with_database(&options.database_url, &database)?;

        let mut config = Config::defaults();
        config.database_url = database_url.clone();
        config.nats_url = options.nats_url.clone();
        config.namespace = namespace.clone();
        config.bind = ([127, 0, 0, 1], 0).into();
        config.jwt_secret = Some(JWT_SECRET.to_owned());
        config.token_ttl_seconds = TOKEN_TTL_SECONDS;
        config.db_pool_size = Some(options.db_pool);
        config.saga_workers = options.saga_workers;
        // The load comes from one address and a handful of accounts: the per-caller limit is
        // for real clients, not for a load generator measuring the engine.
        config.rate_limit_per_second = u32::MAX;
        config.rate_limit_burst = u32::MAX;

        let (ready_tx, ready_rx) = oneshot::channel::<anyhow::Result<(u16, CancellationToken)>>();
        let (done_tx, finished) = oneshot::channel();
        let (threads, role) = (options.threads, options.role);
        std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .thread_name("engine-worker")
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = ready_tx.send(Err(error.into()));
                        return;
                    }
                };
                let result = runtime.block_on(async move {
                    match Application::build_role(config, role).await {
                        Ok(app) => {
                            let _ = ready_tx.send(Ok((app.port(), app.shutdown_token())));
                            app.run_until_stopped().await
                        }
                        Err(error) => {
                            let _ = ready_tx.send(Err(error));
                            Ok(())
                        }
                    }
                });
                runtime.shutdown_timeout(Duration::from_secs(5));
                let _ = done_tx.send(result);
            })
            .context("starting the engine's thread")?;

        let started = ready_rx
            .await
            .context("the engine's thread ended before starting")?;
        let (port, shutdown) = match started {
            Ok(started) => started,
            Err(error) => {
                // It may have created the database before failing.
                let _ = drop_database(&options.database_url, &database).await;
                return Err(error.context("starting the engine"));
            }
        };
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(PgConnectOptions::from_str(&database_url)?.disable_statement_logging())
            .await
            .context("connecting to the engine's database")?;
        let nats = async_nats::connect(&commerce::nats::NatsServers::parse(&options.nats_url)?)
            .await
            .context("connecting to NATS")?;
        Ok(Self {
            base_url: format!("http://127.0.0.1:{port}"),
            pool,
            database,
            database_url,
            namespace,
            jetstream: async_nats::jetstream::new(nats.clone()),
            nats,
            jwt: JwtKeys::new(JWT_SECRET.as_bytes(), TOKEN_TTL_SECONDS),
            options,
            shutdown,
            finished,
            scratch_databases: Mutex::new(Vec::new()),
            scratch_streams: Mutex::new(Vec::new()),
        })
    }

    /// The NATS server(s) the engine uses, for the engine processes of the scale-out run.
    pub fn nats_url(&self) -> &str {
        &self.options.nats_url
    }

    /// The engine's JetStream stream.
    pub fn stream_name(&self) -> anyhow::Result<String> {
        Ok(commerce_projections::Namespace::parse(&self.namespace)?.stream_name())
    }

    /// A fresh empty database next to the engine's (dropped when the engine stops at the
    /// latest): its name and URL.
    pub async fn scratch_database(&self, suffix: &str) -> anyhow::Result<(String, String)> {
        let name = format!("{}_{suffix}", self.database);
        let mut admin = admin_connection(&self.options.database_url).await?;
        admin
            .execute(format!("CREATE DATABASE {}", quoted(&name)).as_str())
            .await
            .with_context(|| format!("creating the database {name}"))?;
        admin.close().await.ok();
        self.scratch_databases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(name.clone());
        let url = with_database(&self.options.database_url, &name)?;
        Ok((name, url))
    }

    /// Drops a scratch database now.
    pub async fn drop_scratch_database(&self, name: &str) -> anyhow::Result<()> {
        drop_database(&self.options.database_url, name).await?;
        self.scratch_databases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|n| n != name);
        Ok(())
    }

    /// Remembers a JetStream stream to delete when the engine stops.
    pub fn scratch_stream(&self, name: &str) {
        self.scratch_streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(name.to_owned());
    }

    /// Deletes a scratch stream now.
    pub async fn drop_scratch_stream(&self, name: &str) -> anyhow::Result<()> {
        self.jetstream
            .delete_stream(name)
            .await
            .with_context(|| format!("deleting the stream {name}"))?;
        self.scratch_streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|n| n != name);
        Ok(())
    }

    /// Stops the engine, then drops its database and stream and every scratch one.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let stream = self.stream_name();
        let stopped = tokio::time::timeout(Duration::from_secs(60), self.finished).await;
        let mut problems = Vec::new();
        match stopped {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => problems.push(format!("the engine stopped with {error:#}")),
            Ok(Err(_)) => problems.push("the engine's thread ended abruptly".to_owned()),
            Err(_) => problems.push("the engine did not stop within 60 s".to_owned()),
        }
        self.pool.close().await;
        let mut streams = std::mem::take(
            &mut *self
                .scratch_streams
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        match stream {
            Ok(name) => streams.push(name),
            Err(error) => problems.push(format!("{error:#}")),
        }
        for stream in streams {
            match self.jetstream.delete_stream(&stream).await {
                Ok(_) => {}
                // A role without the relay never created it.
                Err(error) if is_not_found(&error) => {}
                Err(error) => problems.push(format!("deleting the stream {stream}: {error}")),
            }
        }
        let mut databases = std::mem::take(
            &mut *self
                .scratch_databases
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        databases.push(self.database.clone());
        for database in databases {
            if let Err(error) = drop_database(&self.options.database_url, &database).await {
                problems.push(format!("{error:#}"));
            }
        }
        anyhow::ensure!(problems.is_empty(), "{}", problems.join("; "));
        Ok(())
    }
}

fn is_not_found(error: &async_nats::jetstream::context::DeleteStreamError) -> bool {
    use async_nats::jetstream::context::DeleteStreamErrorKind;
    use async_nats::jetstream::ErrorCode;
    matches!(error.kind(), DeleteStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

async fn admin_connection(url: &str) -> anyhow::Result<PgConnection> {
    PgConnectOptions::from_str(url)
        .context("parsing DATABASE_URL")?
        .database("postgres")
        .disable_statement_logging()
        .connect()
        .await
        .context("connecting to the `postgres` database")
}

async fn drop_database(url: &str, name: &str) -> anyhow::Result<()> {
    let mut admin = admin_connection(url).await?;
    admin
        .execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quoted(name)).as_str())
        .await
        .with_context(|| format!("dropping the database {name}"))?;
    admin.close().await.ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_is_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/commerce", "x").unwrap(),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/db?sslmode=disable", "y").unwrap(),
            "postgres://u@h/y?sslmode=disable"
        );
        assert!(with_database("postgres://host", "z").is_err());
    }
}

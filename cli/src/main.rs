//! `commerce`: the engine's one binary.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use commerce::app::{shutdown_signal, Role, GRACE};
use commerce::operator::{self, OperatorCommand};
use commerce::{demo, telemetry, Application, Config};

/// JSON-heavy work (decoding events, folding read models) allocates a great deal: mimalloc
/// spends far less time on it than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "commerce", version, about = "An event-sourced commerce engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the engine on one port (creates and migrates the database first): every role by
    /// default, or one of them.
    Serve {
        #[arg(value_enum, default_value = "all")]
        role: Role,
        /// Load a small demo catalog (idempotent).
        #[arg(long)]
        demo_catalog: bool,
        #[command(flatten)]
        config: Config,
    },
    /// Serve the sandbox payment gateway on its own (tokens: tok_ok, tok_decline, tok_timeout,
    /// tok_flaky, tok_slow).
    SandboxGateway {
        /// Where to listen.
        #[arg(long, env = "COMMERCE_SANDBOX_BIND", default_value = "127.0.0.1:8090")]
        bind: std::net::SocketAddr,
    },
    /// Create the database if missing and apply pending migrations, then exit.
    Migrate {
        #[command(flatten)]
        config: Config,
    },
    #[command(flatten)]
    Operator(OperatorCommand),
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let command = Cli::parse().command;
    if matches!(command, Command::Operator(_)) {
        // Operator output is for people and scripts on stdout: logs go to stderr, warnings only.
        telemetry::init_cli_logging();
    } else {
        telemetry::init_logging();
    }
    match command {
        Command::Operator(command) => Ok(operator::run(command).await),
        Command::SandboxGateway { bind } => {
            let listener = tokio::net::TcpListener::bind(bind)
                .await
                .with_context(|| format!("binding {bind}"))?;
            let cancel = tokio_util::sync::CancellationToken::new();
            let server = tokio::spawn(commerce_sagas::gateway::Sandbox::serve(
                listener,
                cancel.clone(),
            ));
            shutdown_signal().await;
            cancel.cancel();
            server.await.context("the sandbox task")??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { config } => {
            commerce_store::db::create_database_if_missing(&config.database_url).await?;
            let pool = commerce_store::db::connect(&config.database_url, 2).await?;
            commerce_store::db::migrate(&pool).await?;
            tracing::info!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            role,
            demo_catalog,
            config,
        } => {
            let app = Application::build_role(config, role).await?;
            if demo_catalog && role == Role::All {
                demo::load(&app.router())
                    .await
                    .context("loading the demo catalog")?;
            }
            let shutdown = app.shutdown_token();
            let server = tokio::spawn(app.run_until_stopped());
            shutdown_signal().await;
            tracing::info!("shutting down");
            shutdown.cancel();
            let stopped = match tokio::time::timeout(GRACE, server).await {
                Ok(joined) => joined.context("the server task").and_then(|served| served),
                Err(_) => {
                    tracing::warn!("in-flight requests did not finish in time");
                    Ok(())
                }
            };
            telemetry::shutdown_tracing().await;
            stopped?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

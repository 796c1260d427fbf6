//! The operator commands: a running engine's admin API over HTTP (`COMMERCE_URL`), so they
//! work against a deployment elsewhere; `admin create` alone works on the database.
//!
//! - `client`: the global options, sign-in, and how answers become exit codes.
//! - `output`: tables for people, the API's JSON as is for scripts.
//! - `progress`: `--wait` with a progress bar.
//! - one file per command group: `projections` (with `rebuilds`), `streams`, `events`,
//!   `dead_letters`, `sagas`, `webhooks`, `admin`.

mod admin;
mod client;
mod dead_letters;
mod events;
mod output;
mod progress;
mod projections;
mod sagas;
mod streams;
mod webhooks;

use std::process::ExitCode;

use clap::Subcommand;

pub use client::{Connection, Exit, Failure};

/// The operator's subcommands of `commerce`.
#[derive(Subcommand)]
pub enum OperatorCommand {
    /// Projections: their position, lag and state; rebuild one.
    Projections {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: projections::ProjectionsCommand,
    },
    /// Rebuilds of projections: list, follow, cancel.
    Rebuilds {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: projections::RebuildsCommand,
    },
    /// One aggregate's stream: its events, or its state as of a position or an instant.
    Streams {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: streams::StreamsCommand,
    },
    /// The event store: follow it live, or publish its events to the bus again.
    Events {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: events::EventsCommand,
    },
    /// Events a projection could not apply: inspect and retry them.
    DeadLetters {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: dead_letters::DeadLettersCommand,
    },
    /// Checkout sagas: find the stuck ones, inspect, retry.
    Sagas {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: sagas::SagasCommand,
    },
    /// Outbound webhooks: list them, read a delivery log, redeliver, replay from a position.
    Webhooks {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: webhooks::WebhooksCommand,
    },
    /// Admin accounts, created on the database directly (DATABASE_URL).
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
}

/// Runs one operator command: its output on stdout, one line on stderr when it fails, and the
/// contract's exit code.
pub async fn run(command: OperatorCommand) -> ExitCode {
    match dispatch(command).await {
        Ok(()) => Exit::Success.into(),
        Err(failure) => {
            eprintln!("commerce: {failure}");
            failure.exit.into()
        }
    }
}

async fn dispatch(command: OperatorCommand) -> client::Outcome {
    use client::Client;
    match command {
        OperatorCommand::Projections {
            connection,
            command,
        } => {
            let mut client = Client::connect(&connection).await?;
            projections::projections(&mut client, connection.json, command).await
        }
        OperatorCommand::Rebuilds {
            connection,
            command,
        } => {
            let mut client = Client::connect(&connection).await?;
            projections::rebuilds(&mut client, connection.json, command).await
        }
        OperatorCommand::Streams {
            connection,
            command,
        } => {
            let mut client = Client::connect(&connection).await?;
            streams::run(&mut client, connection.json, command).await
        }
        OperatorCommand::Events {
            connection,
            command,
        } => {
            let mut client = Client::connect(&connection).await?;
            events::run(&mut client, connection.json, command).await
        }
        OperatorCommand::Webhooks {
            connection,
            command,
        } => {
            let mut client = Client::connect(&connection).await?;
            webhooks::run(&mut client, connection.json, command).await
        }
        OperatorCommand::DeadLetters {
            connection,
            command,
        } => {
            let mut client = Client::connect(&connection).await?;
            dead_letters::run(&mut client, connection.json, command).await
        }
        OperatorCommand::Sagas {
            connection,
            command,
        } => {
            let mut client = Client::connect(&connection).await?;
            sagas::run(&mut client, connection.json, command).await
        }
        OperatorCommand::Admin { command } => admin::run(command).await,
    }
}

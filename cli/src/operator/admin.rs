//! `admin create`: the first admin, written straight to the database (there is no admin yet to
//! sign in with), through the same code path as the bootstrap at start.

use std::io::{BufRead, IsTerminal};

use clap::{Args, Subcommand};
use commerce_command_api::{create_admin, AdminAccount, AdminRefusal, CommandState};
use commerce_http::JwtKeys;
use commerce_store::throttle::ThrottleConfig;

use super::client::{Exit, Failure, Outcome};

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create an admin account on the database (creating and migrating it when needed); an
    /// admin with that e-mail already there is left as it is.
    #[command(
        after_help = "The password comes from --password, else COMMERCE_ADMIN_PASSWORD, \
                            else a line on stdin.\n\nExamples:\n  \
                            commerce admin create --email ops@example.com\n  \
                            printf '%s\\n' \"$PASS\" | commerce admin create --email ops@example.com --name Ops"
    )]
    Create(CreateArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// The admin's e-mail.
    #[arg(long)]
    email: String,
    /// The password (8 to 128 characters); prefer the variable or stdin, which stay out of
    /// the shell history.
    #[arg(long, env = "COMMERCE_ADMIN_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// The name the account shows.
    #[arg(long, default_value = "Administrator")]
    name: String,
    /// The database; created if missing and migrated, as `commerce migrate` does.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = commerce_store::db::DEFAULT_DATABASE_URL,
        hide_env_values = true
    )]
    database_url: String,
}

pub async fn run(command: AdminCommand) -> Outcome {
    let AdminCommand::Create(args) = command;
    let password = match args.password {
        Some(password) => password,
        None => read_password()?,
    };
    let state = connect(&args.database_url).await?;
    match create_admin(&state, &args.email, &password, &args.name).await {
        Ok(AdminAccount::Created(id)) => {
            println!("created admin {} (account {id})", args.email);
            Ok(())
        }
        Ok(AdminAccount::Existing(id)) => {
            println!(
                "admin {} already exists (account {id}); nothing changed",
                args.email
            );
            Ok(())
        }
        Err(AdminRefusal::Invalid(detail)) => Err(Failure::new(Exit::Usage, detail)),
        Err(refusal @ AdminRefusal::NotAnAdmin(_)) => Err(Failure::new(
            Exit::Conflict,
            format!("{}: {refusal}", args.email),
        )),
        Err(AdminRefusal::Failed(e)) => Err(Failure::failed(format!("creating the admin: {e:#}"))),
    }
}

/// A line on stdin; on a terminal, prompted for without echo.
fn read_password() -> Outcome<String> {
    let stdin = std::io::stdin();
    let line = if stdin.is_terminal() {
        rpassword::prompt_password("Password for the new admin: ")
            .map_err(|e| Failure::failed(format!("reading the password: {e}")))?
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure::failed(format!("reading the password from stdin: {e}")))?;
        line
    };
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        return Err(Failure::new(
            Exit::Usage,
            "no password: give --password, COMMERCE_ADMIN_PASSWORD or a line on stdin",
        ));
    }
    Ok(password)
}

/// The database, created and migrated like `commerce migrate`; unreachable is exit 3.
async fn connect(database_url: &str) -> Outcome<CommandState> {
    let unreachable = |e: anyhow::Error| {
        Failure::new(
            Exit::Unreachable,
            format!(
                "cannot reach the database at {}: {e:#}",
                redact(database_url)
            ),
        )
    };
    commerce_store::db::create_database_if_missing(database_url)
        .await
        .map_err(unreachable)?;
    let pool = commerce_store::db::connect(database_url, 2)
        .await
        .map_err(unreachable)?;
    commerce_store::db::migrate(&pool)
        .await
        .map_err(|e| Failure::failed(format!("migrating the database: {e:#}")))?;
    // No token is issued here, so the signing key only has to be one nobody knows.
    let key = uuid::Uuid::new_v4();
    Ok(CommandState::new(
        pool,
        JwtKeys::new(key.as_bytes(), 60),
        ThrottleConfig::default(),
    ))
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_stay_out_of_messages() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/commerce"),
            "postgres://app:***@db:5432/commerce"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1/x"),
            "postgres://postgres@127.0.0.1/x"
        );
    }
}

//! Configuration from the environment, exactly as API.md's table names it.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

/// The development secret used when `COMMERCE_JWT_SECRET` is unset outside production.
const DEVELOPMENT_JWT_SECRET: &str = "commerce-development-secret-do-not-use-in-production";

/// Everything the engine reads from its environment.
#[derive(Clone, Args)]
pub struct Config {
    /// Postgres; the database is created if missing and migrated at start.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/commerce"
    )]
    pub database_url: String,
    /// NATS with JetStream enabled.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// Prefixes the JetStream stream, subjects and durable consumer names.
    #[arg(long, env = "COMMERCE_NAMESPACE", default_value = "commerce")]
    pub namespace: String,
    /// Where the all-in-one process listens.
    #[arg(long, env = "COMMERCE_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Signs the bearer tokens; required when `COMMERCE_ENV=production`.
    #[arg(long, env = "COMMERCE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// `production` makes a missing secret fatal.
    #[arg(long, env = "COMMERCE_ENV", default_value = "development")]
    pub environment: String,
    /// With the password, the admin account created at start when absent.
    #[arg(long, env = "COMMERCE_ADMIN_EMAIL")]
    pub admin_email: Option<String>,
    #[arg(long, env = "COMMERCE_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// A real payment provider's endpoint; the built-in sandbox when unset.
    #[arg(long, env = "COMMERCE_PAYMENT_GATEWAY_URL")]
    pub payment_gateway_url: Option<String>,
    /// How long an authorisation may go unanswered, e.g. `30s`, `500ms`, `2m`.
    #[arg(long, env = "COMMERCE_PAYMENT_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub payment_timeout: Duration,
    /// How long after delivery an order can be returned, e.g. `30d`, `12h`; the sale is final
    /// after it.
    #[arg(long, env = "COMMERCE_RETURN_WINDOW", default_value = "30d", value_parser = parse_duration)]
    pub return_window: Duration,
    /// How long a bearer token lives, in seconds.
    #[arg(long, env = "COMMERCE_TOKEN_TTL", default_value_t = 3600)]
    pub token_ttl_seconds: i64,
    /// The longest a read with `X-Min-Position` waits for the read models.
    #[arg(long, env = "COMMERCE_MIN_POSITION_WAIT", default_value = "5s", value_parser = parse_duration)]
    pub min_position_wait: Duration,
    /// Saga worker loops in this process (each drives up to 32 sagas at once); 0 runs none.
    #[arg(long, env = "COMMERCE_SAGA_WORKERS", default_value_t = 1)]
    pub saga_workers: usize,
    /// Postgres connections in the pool.
    #[arg(long, env = "COMMERCE_DB_POOL", default_value_t = 32)]
    pub db_pool_size: u32,
    /// Events a rebuild applies per transaction (and checkpoint).
    #[arg(long, env = "COMMERCE_REBUILD_BATCH", default_value_t = 5000, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub rebuild_batch: i64,
}

/// Secrets are never printed: a `{:?}` of the configuration shows whether they are set, not them.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>");
        f.debug_struct("Config")
            .field("database_url", &self.database_url)
            .field("nats_url", &self.nats_url)
            .field("namespace", &self.namespace)
            .field("bind", &self.bind)
            .field("jwt_secret", &redacted(&self.jwt_secret))
            .field("environment", &self.environment)
            .field("admin_email", &self.admin_email)
            .field("admin_password", &redacted(&self.admin_password))
            .field("payment_gateway_url", &self.payment_gateway_url)
            .field("payment_timeout", &self.payment_timeout)
            .field("return_window", &self.return_window)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// The defaults of API.md's table, as if no variable were set.
    pub fn defaults() -> Self {
        Self {
            database_url: commerce_store::db::DEFAULT_DATABASE_URL.into(),
            nats_url: "nats://127.0.0.1:4222".into(),
            namespace: "commerce".into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            jwt_secret: None,
            environment: "development".into(),
            admin_email: None,
            admin_password: None,
            payment_gateway_url: None,
            payment_timeout: Duration::from_secs(30),
            return_window: Duration::from_secs(30 * 24 * 3600),
            token_ttl_seconds: 3600,
            min_position_wait: Duration::from_secs(5),
            saga_workers: 1,
            db_pool_size: 32,
            rebuild_batch: 5000,
        }
    }

    /// The secret that signs tokens; the development one, with a warning, outside production.
    pub fn jwt_secret(&self) -> anyhow::Result<String> {
        match &self.jwt_secret {
            Some(secret) if secret.len() >= 32 => Ok(secret.clone()),
            Some(_) => anyhow::bail!("COMMERCE_JWT_SECRET must be at least 32 characters"),
            None if self.environment == "production" => {
                anyhow::bail!("COMMERCE_JWT_SECRET is required when COMMERCE_ENV=production")
            }
            None => {
                tracing::warn!(
                    "COMMERCE_JWT_SECRET is unset: signing tokens with the development secret"
                );
                Ok(DEVELOPMENT_JWT_SECRET.to_owned())
            }
        }
    }
}

/// `30s`, `500ms`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, "s"), |i| text.split_at(i));
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 30s"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(value)),
        "s" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value * 60)),
        "h" => Ok(Duration::from_secs(value * 3600)),
        "d" => Ok(Duration::from_secs(value * 24 * 3600)),
        _ => Err(format!("`{text}`: use ms, s, m, h or d")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn debug_output_hides_the_secrets() {
        let mut config = Config::defaults();
        config.jwt_secret = Some("s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t".into());
        config.admin_password = Some("hunter2hunter2".into());
        let printed = format!("{config:?}");
        assert!(
            !printed.contains("s3cr3t") && !printed.contains("hunter2"),
            "{printed}"
        );
        assert!(printed.contains("<redacted>"));
    }

    #[test]
    fn production_requires_a_secret() {
        let mut config = Config::defaults();
        config.environment = "production".into();
        assert!(config.jwt_secret().is_err());
        config.jwt_secret = Some("x".repeat(32));
        assert!(config.jwt_secret().is_ok());
    }
}

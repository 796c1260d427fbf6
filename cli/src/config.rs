//! Configuration from the environment, exactly as API.md's table names it.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};
use commerce_http::rate_limit::RateLimit;
use commerce_projections::Partitioning;
use commerce_store::throttle::ThrottleConfig;
use commerce_webhooks::backoff::Backoff;
use commerce_webhooks::delivery::Breaker;
use commerce_webhooks::DeliveryConfig;

/// Where the engine runs. Only these exact names are accepted: a guard that matched only
/// `production` once let `Production` run with a development setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    Development,
    Test,
    Production,
}

/// Everything the engine reads from its environment.
#[derive(Clone, Args)]
pub struct Config {
    /// Postgres; the database is created if missing and migrated at start.
    // Connection strings carry passwords: `--help` must not print the environment's value.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/commerce",
        hide_env_values = true
    )]
    pub database_url: String,
    /// A streaming replica of `DATABASE_URL` that the query routes read while it is up and at
    /// most `COMMERCE_READ_MAX_LAG` behind (the primary otherwise). Unset: reads use
    /// `DATABASE_URL`.
    #[arg(long, env = "COMMERCE_READ_DATABASE_URL", hide_env_values = true)]
    pub read_database_url: Option<String>,
    /// How far behind the primary the read replica may be and still be read, e.g. `2s`.
    #[arg(long, env = "COMMERCE_READ_MAX_LAG", default_value = "2s", value_parser = parse_duration)]
    pub read_max_lag: Duration,
    /// NATS with JetStream enabled: one server, or several separated by commas (a cluster; the
    /// client fails over between them).
    #[arg(
        long,
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        hide_env_values = true
    )]
    pub nats_url: String,
    /// Prefixes the JetStream stream, subjects and durable consumer names.
    #[arg(long, env = "COMMERCE_NAMESPACE", default_value = "commerce")]
    pub namespace: String,
    /// Where the all-in-one process listens.
    #[arg(long, env = "COMMERCE_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// The URL clients reach the engine at (behind a proxy, its public address): problem `type`
    /// URIs are built on it. Default: `http://` and the address the engine listens on.
    #[arg(long, env = "COMMERCE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Signs the bearer tokens (at least 32 characters); required when `COMMERCE_ENV=production`.
    /// Unset elsewhere: a random secret per start, so tokens die with the process.
    #[arg(long, env = "COMMERCE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// `production` makes a missing secret fatal.
    #[arg(
        long,
        env = "COMMERCE_ENV",
        value_name = "COMMERCE_ENV",
        value_enum,
        default_value = "development"
    )]
    pub environment: Environment,
    /// With the password, the admin account created at start when absent.
    #[arg(long, env = "COMMERCE_ADMIN_EMAIL")]
    pub admin_email: Option<String>,
    #[arg(long, env = "COMMERCE_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// A real payment provider's endpoint; the built-in sandbox when unset.
    // A provider's URL may carry an API key.
    #[arg(long, env = "COMMERCE_PAYMENT_GATEWAY_URL", hide_env_values = true)]
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
    /// The most saga steps committed in one transaction (1: every step its own commit).
    #[arg(long, env = "COMMERCE_SAGA_STEPS_PER_COMMIT", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub saga_steps_per_commit: u32,
    /// Postgres connections in the pool. Default: the role's share of a deployment that fits
    /// a stock `max_connections = 100` (`Role::default_pool_size`).
    #[arg(long, env = "COMMERCE_DB_POOL", value_parser = clap::value_parser!(u32).range(1..))]
    pub db_pool_size: Option<u32>,
    /// Projections this process runs as partitions, each its own durable consumer:
    /// `orders=2` runs both of 2 partitions, `orders=4:0+1` partitions 0 and 1 of 4; entries
    /// separated by commas. Every process must give a projection the same count.
    #[arg(long, env = "COMMERCE_PROJECTION_PARTITIONS", default_value = "", value_parser = parse_partitions)]
    pub projection_partitions: Partitioning,
    /// Events a rebuild applies per transaction (and checkpoint).
    #[arg(long, env = "COMMERCE_REBUILD_BATCH", default_value_t = 5000, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub rebuild_batch: i64,
    /// Requests a second each caller (a token's account, else an IP) may sustain on the API
    /// routes.
    #[arg(long, env = "COMMERCE_RATE_LIMIT_PER_SECOND", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_per_second: u32,
    /// Requests each caller may send at once above the sustained rate.
    #[arg(long, env = "COMMERCE_RATE_LIMIT_BURST", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_burst: u32,
    /// The first sign-in delay after the free failures; it doubles with each further failure.
    #[arg(long, env = "COMMERCE_SIGN_IN_DELAY", default_value = "1s", value_parser = parse_duration)]
    pub sign_in_delay: Duration,
    /// The longest sign-in delay.
    #[arg(long, env = "COMMERCE_SIGN_IN_MAX_DELAY", default_value = "15m", value_parser = parse_duration)]
    pub sign_in_max_delay: Duration,
    /// Believe the last `X-Forwarded-For` entry as the client's address (only behind a proxy
    /// that sets it); otherwise the socket's peer address is the client.
    #[arg(long, env = "COMMERCE_TRUST_FORWARDED_FOR", default_value_t = false, action = clap::ArgAction::Set)]
    pub trust_forwarded_for: bool,
    /// How long the JetStream stream keeps a message, e.g. `7d`, `12h`; `0` keeps them for
    /// ever. Set by the relay when it creates the stream, and on an existing one.
    #[arg(long, env = "COMMERCE_STREAM_MAX_AGE", default_value = "7d", value_parser = parse_duration)]
    pub stream_max_age: Duration,
    /// On how many servers of a NATS cluster the stream and its consumers are kept (3 on a
    /// 3-node cluster; 1 on a single server). Set by the relay, on an existing stream too.
    #[arg(long, env = "COMMERCE_STREAM_REPLICAS", default_value_t = 1,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=commerce_projections::stream::MAX_REPLICAS as u64))]
    pub stream_replicas: usize,
    /// How long NATS, the relay or a projection may be failing (logged at WARN) before the
    /// outage is logged, once, at ERROR.
    #[arg(long, env = "COMMERCE_OUTAGE_ERROR_AFTER", default_value = "60s", value_parser = parse_duration)]
    pub outage_error_after: Duration,
    /// Accept webhook URLs that resolve to loopback or private addresses (tests, local
    /// development); refused (422, and at every delivery) otherwise.
    #[arg(long, env = "COMMERCE_WEBHOOK_ALLOW_PRIVATE", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_allow_private: bool,
    /// The wait before a failed webhook delivery's first retry (each later wait doubles).
    #[arg(long, env = "COMMERCE_WEBHOOK_FIRST_RETRY", default_value = "5s", value_parser = parse_duration)]
    pub webhook_first_retry: Duration,
    /// How long a webhook delivery is retried before it is marked failed.
    #[arg(long, env = "COMMERCE_WEBHOOK_RETRY_FOR", default_value = "24h", value_parser = parse_duration)]
    pub webhook_retry_for: Duration,
    /// How long a webhook's circuit stays open (nothing sent) after 5 consecutive failures,
    /// before a probe.
    #[arg(long, env = "COMMERCE_WEBHOOK_CIRCUIT_OPEN_FOR", default_value = "30s", value_parser = parse_duration)]
    pub webhook_circuit_open_for: Duration,
    /// How long a finished webhook delivery stays in the delivery log.
    #[arg(long, env = "COMMERCE_WEBHOOK_LOG_RETENTION", default_value = "30d", value_parser = parse_duration)]
    pub webhook_log_retention: Duration,
    /// The longest one webhook delivery attempt may take.
    #[arg(long, env = "COMMERCE_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub webhook_timeout: Duration,
}

/// Secrets are never printed: a `{:?}` of the configuration shows whether they are set, not them.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>");
        f.debug_struct("Config")
            .field("database_url", &without_password(&self.database_url))
            .field("read_database_url", &redacted(&self.read_database_url))
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
            .field("saga_steps_per_commit", &self.saga_steps_per_commit)
            .field("projection_partitions", &self.projection_partitions)
            .field("rate_limit_per_second", &self.rate_limit_per_second)
            .field("rate_limit_burst", &self.rate_limit_burst)
            .field("stream_max_age", &self.stream_max_age)
            .field("stream_replicas", &self.stream_replicas)
            .field("outage_error_after", &self.outage_error_after)
            .field("webhook_allow_private", &self.webhook_allow_private)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// The defaults of API.md's table, as if no variable were set.
    pub fn defaults() -> Self {
        Self {
            database_url: commerce_store::db::DEFAULT_DATABASE_URL.into(),
            read_database_url: None,
            read_max_lag: Duration::from_secs(2),
            nats_url: "nats://127.0.0.1:4222".into(),
            namespace: "commerce".into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            jwt_secret: None,
            environment: Environment::Development,
            admin_email: None,
            admin_password: None,
            payment_gateway_url: None,
            payment_timeout: Duration::from_secs(30),
            return_window: Duration::from_secs(30 * 24 * 3600),
            token_ttl_seconds: 3600,
            min_position_wait: Duration::from_secs(5),
            saga_workers: 1,
            saga_steps_per_commit: 32,
            db_pool_size: None,
            projection_partitions: Partitioning::default(),
            rebuild_batch: 5000,
            rate_limit_per_second: 20,
            rate_limit_burst: 50,
            sign_in_delay: Duration::from_secs(1),
            sign_in_max_delay: Duration::from_secs(15 * 60),
            trust_forwarded_for: false,
            stream_max_age: commerce_projections::stream::DEFAULT_MAX_AGE,
            stream_replicas: 1,
            outage_error_after: commerce_projections::outage::ERROR_AFTER,
            webhook_allow_private: false,
            webhook_first_retry: Duration::from_secs(5),
            webhook_retry_for: Duration::from_secs(24 * 3600),
            webhook_circuit_open_for: Duration::from_secs(30),
            webhook_log_retention: Duration::from_secs(30 * 24 * 3600),
            webhook_timeout: Duration::from_secs(10),
        }
    }

    /// The servers of `NATS_URL`; a malformed list stops the start.
    pub fn nats_servers(&self) -> anyhow::Result<crate::nats::NatsServers> {
        crate::nats::NatsServers::parse(&self.nats_url)
    }

    /// How webhook deliveries are made and retried.
    pub fn webhook_delivery(&self) -> DeliveryConfig {
        let defaults = DeliveryConfig::default();
        DeliveryConfig {
            allow_private: self.webhook_allow_private,
            backoff: Backoff {
                first: self.webhook_first_retry,
                retry_for: self.webhook_retry_for,
                ..defaults.backoff
            },
            breaker: Breaker {
                open_for: self.webhook_circuit_open_for,
                ..defaults.breaker
            },
            attempt_timeout: self.webhook_timeout,
            log_retention: self.webhook_log_retention,
            ..defaults
        }
    }

    /// The per-caller limit of the API routes.
    pub fn rate_limit(&self) -> RateLimit {
        RateLimit {
            per_second: self.rate_limit_per_second,
            burst: self.rate_limit_burst,
        }
    }

    /// How failed sign-ins are throttled.
    pub fn sign_in_throttle(&self) -> ThrottleConfig {
        ThrottleConfig {
            base_delay: self.sign_in_delay,
            max_delay: self.sign_in_max_delay.max(self.sign_in_delay),
            ..ThrottleConfig::default()
        }
    }

    /// The secret that signs tokens. Unset outside production: 32 random bytes, new at every
    /// start, so that no secret written anywhere (the source included) ever signs a token.
    pub fn jwt_secret(&self) -> anyhow::Result<Vec<u8>> {
        match &self.jwt_secret {
            Some(secret) if secret.len() >= 32 => Ok(secret.as_bytes().to_vec()),
            Some(_) => anyhow::bail!("COMMERCE_JWT_SECRET must be at least 32 characters"),
            None if self.environment == Environment::Production => {
                anyhow::bail!("COMMERCE_JWT_SECRET is required when COMMERCE_ENV=production")
            }
            None => {
                tracing::warn!(
                    "COMMERCE_JWT_SECRET is unset: signing tokens with a random secret made at \
                     this start; tokens die with the process, and every process of a deployment \
                     with more than one must be given the same COMMERCE_JWT_SECRET"
                );
                let mut secret = vec![0_u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
                Ok(secret)
            }
        }
    }
}

/// A connection URL with its password, if any, replaced: what a `{:?}` of the configuration
/// may show.
fn without_password(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("redacted"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "<unparsable>".to_owned(),
    }
}

/// `COMMERCE_PROJECTION_PARTITIONS`.
fn parse_partitions(text: &str) -> Result<Partitioning, String> {
    Partitioning::parse(text).map_err(|error| format!("{error:#}"))
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
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 24 * 3600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn debug_output_hides_the_secrets() {
        let mut config = Config::defaults();
        config.jwt_secret = Some("s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t".into());
        config.admin_password = Some("hunter2hunter2".into());
        config.database_url = "postgres://app:dbs3cr3t@db.internal:5432/shop".into();
        let printed = format!("{config:?}");
        assert!(
            !printed.contains("s3cr3t") && !printed.contains("hunter2"),
            "{printed}"
        );
        assert!(printed.contains("<redacted>"));
        assert!(
            printed.contains("postgres://app:redacted@db.internal:5432/shop"),
            "{printed}"
        );
    }

    #[test]
    fn production_requires_a_secret() {
        let mut config = Config::defaults();
        config.environment = Environment::Production;
        assert!(config.jwt_secret().is_err());
        config.jwt_secret = Some("x".repeat(32));
        assert!(config.jwt_secret().is_ok());
    }

    #[test]
    fn without_a_secret_each_start_signs_with_a_new_random_one() {
        let config = Config::defaults();
        let (first, second) = (config.jwt_secret().unwrap(), config.jwt_secret().unwrap());
        assert_eq!(first.len(), 32);
        assert_ne!(first, second);
    }
}

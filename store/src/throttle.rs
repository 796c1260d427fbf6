//! Sign-in throttling, modelled on Saleor's: failed attempts are counted per IP and per IP and
//! account; past a number of free failures, each one blocks the key for a delay that doubles, up
//! to a cap. The counts live in Postgres (`sign_in_throttle`) so that every process of a
//! deployment sees the same ones. A success clears the IP-and-account count (not the IP's: one
//! good password must not launder a spray over many accounts).
//!
//! The account part of a key is the e-mail as typed (normalised and hashed, so the table holds
//! no address), whether or not an account holds it: an unknown e-mail counts like a wrong
//! password and is throttled alike.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// How many failures are free and how long the delays grow.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleConfig {
    /// Failures from one IP for one account before the first delay.
    pub free_per_account: i32,
    /// Failures from one IP, over every account, before the first delay: higher, since many
    /// people may share an address.
    pub free_per_ip: i32,
    /// The first delay; each further failure doubles it.
    pub base_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            free_per_account: 3,
            free_per_ip: 20,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
        }
    }
}

/// The throttle's keys for one attempt.
#[derive(Debug, Clone)]
pub struct SignInKeys {
    ip: String,
    ip_account: String,
}

impl SignInKeys {
    pub fn new(ip: IpAddr, email: &str) -> Self {
        let email = email.trim().to_lowercase();
        let digest = Sha256::digest(email.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        Self {
            ip: format!("ip:{ip}"),
            ip_account: format!("ip-account:{ip}:{hex}"),
        }
    }
}

/// Failed sign-ins, shared through Postgres.
#[derive(Clone)]
pub struct SignInThrottle {
    pool: PgPool,
    config: ThrottleConfig,
}

impl SignInThrottle {
    pub fn new(pool: PgPool, config: ThrottleConfig) -> Self {
        Self { pool, config }
    }

    /// How long the attempt must wait, when one of its keys is blocked.
    pub async fn blocked_for(&self, keys: &SignInKeys) -> anyhow::Result<Option<Duration>> {
        let seconds: Option<f64> = sqlx::query_scalar(
            "SELECT extract(epoch FROM max(blocked_until) - now())::float8 FROM sign_in_throttle \
             WHERE key = ANY($1) AND blocked_until > now()",
        )
        .bind([keys.ip.as_str(), keys.ip_account.as_str()])
        .fetch_one(&self.pool)
        .await
        .context("reading the sign-in throttle")?;
        Ok(seconds
            .filter(|s| *s > 0.0)
            .map(|s| Duration::from_secs_f64(s.min(self.config.max_delay.as_secs_f64()))))
    }

    /// Counts a failed attempt against both keys, and blocks those past their free failures.
    pub async fn failed(&self, keys: &SignInKeys) -> anyhow::Result<()> {
        let key_list = [keys.ip.as_str(), keys.ip_account.as_str()];
        let free = [self.config.free_per_ip, self.config.free_per_account];
        let mut tx = self.pool.begin().await.context("beginning a transaction")?;
        sqlx::query(
            "INSERT INTO sign_in_throttle AS t (key, failures) SELECT unnest($1::text[]), 1 \
             ON CONFLICT (key) DO UPDATE SET \
               failures = CASE WHEN t.updated_at < now() - interval '1 day' THEN 1 \
                               ELSE t.failures + 1 END, \
               updated_at = now()",
        )
        .bind(key_list)
        .execute(&mut *tx)
        .await
        .context("counting a failed sign-in")?;
        // The exponent is capped so that the doubling cannot overflow before `least` applies.
        sqlx::query(
            "UPDATE sign_in_throttle AS t SET blocked_until = CASE WHEN t.failures > x.free THEN \
               now() + least($3 * power(2, least(t.failures - x.free - 1, 40)), $4) \
                       * interval '1 millisecond' END \
             FROM unnest($1::text[], $2::int[]) AS x(key, free) WHERE t.key = x.key",
        )
        .bind(key_list)
        .bind(free)
        .bind(self.config.base_delay.as_secs_f64() * 1000.0)
        .bind(self.config.max_delay.as_secs_f64() * 1000.0)
        .execute(&mut *tx)
        .await
        .context("blocking a key of the sign-in throttle")?;
        tx.commit().await.context("committing a failed sign-in")?;
        Ok(())
    }

    /// A successful sign-in: the IP-and-account count starts over.
    pub async fn succeeded(&self, keys: &SignInKeys) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM sign_in_throttle WHERE key = $1")
            .bind(&keys.ip_account)
            .execute(&self.pool)
            .await
            .context("clearing the sign-in throttle")?;
        Ok(())
    }
}

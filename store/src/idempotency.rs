//! Idempotency records: the first response to a command sent with an `Idempotency-Key`.

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Postgres, Transaction};

/// The response to store, less what only the commit knows (version and position).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: Option<Value>,
    pub location: Option<String>,
    /// The version of the aggregate the command changed (the `ETag`).
    pub etag: Option<i64>,
    /// The global position of the command's last event.
    pub position: Option<i64>,
}

/// A key, the hash of the request it came with, and the response to remember.
#[derive(Debug, Clone)]
pub struct IdempotencyRecord {
    /// Whose key: keys of different accounts never collide.
    pub scope: String,
    pub key: String,
    pub request_hash: Vec<u8>,
    pub response: StoredResponse,
}

/// What an earlier request with the same key left.
#[derive(Debug, Clone)]
pub struct PreviousRequest {
    pub request_hash: Vec<u8>,
    pub response: StoredResponse,
}

type Row = (
    Vec<u8>,
    i16,
    Option<Value>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

/// The fingerprint a key is recorded with: the route (method and path) and the parsed body, so
/// that the body's formatting does not count.
pub fn request_hash(route: &str, body: &impl Serialize) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(route.as_bytes());
    hasher.update([0]);
    hasher.update(serde_json::to_vec(body).unwrap_or_default());
    hasher.finalize().to_vec()
}

/// The earlier request with this key, if any.
pub async fn lookup(
    pool: &PgPool,
    scope: &str,
    key: &str,
) -> anyhow::Result<Option<PreviousRequest>> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT request_hash, status, body, location, etag, position FROM idempotency_keys WHERE scope = $1 AND key = $2",
    )
    .bind(scope)
    .bind(key)
    .fetch_optional(pool)
    .await
    .context("looking up an idempotency key")?;
    Ok(row.map(
        |(request_hash, status, body, location, etag, position)| PreviousRequest {
            request_hash,
            response: StoredResponse {
                status: u16::try_from(status).unwrap_or(500),
                body,
                location,
                etag,
                position,
            },
        },
    ))
}

/// Inserts the record; `Ok(false)` when the key was taken in between.
pub async fn insert(
    record: &IdempotencyRecord,
    tx: &mut Transaction<'_, Postgres>,
) -> anyhow::Result<bool> {
    let response = &record.response;
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, request_hash, status, body, location, etag, position) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
    )
    .bind(&record.scope)
    .bind(&record.key)
    .bind(&record.request_hash)
    .bind(i16::try_from(response.status).unwrap_or(500))
    .bind(&response.body)
    .bind(&response.location)
    .bind(response.etag)
    .bind(response.position)
    .execute(&mut **tx)
    .await
    .context("recording the idempotency key")?;
    Ok(inserted.rows_affected() == 1)
}

//! The people's data keys (`person_keys`): what seals personal data into events and opens it
//! for readers, and what forgetting someone destroys (see `commerce_domain::privacy`).

use std::collections::HashMap;

use anyhow::Context;
use commerce_domain::privacy::{DataKey, Sealed};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Why a value could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The person was forgotten: nothing is ever sealed for them again.
    #[error("person {0} was forgotten")]
    Forgotten(Uuid),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// `value` sealed for `person`, under their key (made on first use).
pub async fn seal<T: Serialize + ?Sized>(
    pool: &PgPool,
    person: Uuid,
    value: &T,
) -> Result<Sealed, SealError> {
    let key = key_for(pool, person).await?;
    Ok(Sealed::seal(&key, person, value).map_err(anyhow::Error::from)?)
}

/// The person's key, made on first use; refused for a forgotten person.
pub async fn key_for(pool: &PgPool, person: Uuid) -> Result<DataKey, SealError> {
    let fresh = DataKey::generate();
    // One round trip: the row inserted now, or the one that was there. A row another
    // transaction inserts at the same moment is not in this statement's snapshot: ask again.
    for _ in 0..3 {
        let stored: Option<Option<Vec<u8>>> = sqlx::query_scalar(
            "WITH made AS (INSERT INTO person_keys (person_id, data_key) VALUES ($1, $2) \
                           ON CONFLICT (person_id) DO NOTHING RETURNING data_key) \
             SELECT data_key FROM made \
             UNION ALL SELECT data_key FROM person_keys WHERE person_id = $1 \
             LIMIT 1",
        )
        .bind(person)
        .bind(fresh.as_bytes())
        .fetch_optional(pool)
        .await
        .context("reading a data key")?;
        if let Some(stored) = stored {
            let stored = stored.ok_or(SealError::Forgotten(person))?;
            return Ok(DataKey::from_bytes(&stored).context("a stored data key is not 32 bytes")?);
        }
    }
    Err(anyhow::anyhow!("the data key of person {person} is neither made nor found").into())
}

/// Replaces every sealed value in `document` by what it holds, or by `"forgotten"` when its
/// person's key is gone. One query, whatever the number of people in it.
pub async fn reveal(pool: &PgPool, document: &mut Value) -> anyhow::Result<()> {
    let people = Sealed::people_in(document);
    if people.is_empty() {
        return Ok(());
    }
    let rows: Vec<(Uuid, Vec<u8>)> = sqlx::query_as(
        "SELECT person_id, data_key FROM person_keys \
         WHERE person_id = ANY($1) AND data_key IS NOT NULL",
    )
    .bind(&people)
    .fetch_all(pool)
    .await
    .context("reading data keys")?;
    let keys: HashMap<Uuid, DataKey> = rows
        .into_iter()
        .filter_map(|(person, key)| Some((person, DataKey::from_bytes(&key)?)))
        .collect();
    Sealed::reveal_in(document, &|person| keys.get(&person).cloned());
    Ok(())
}

/// Destroys the person's key, for good, inside the caller's transaction; a person who never had
/// one is recorded as forgotten all the same, so that none is ever made for them. `false` when
/// they were forgotten already.
pub async fn forget(conn: &mut PgConnection, person: Uuid) -> anyhow::Result<bool> {
    let destroyed = sqlx::query(
        "INSERT INTO person_keys (person_id, data_key, forgotten_at) VALUES ($1, NULL, now()) \
         ON CONFLICT (person_id) DO UPDATE SET data_key = NULL, forgotten_at = now() \
         WHERE person_keys.forgotten_at IS NULL",
    )
    .bind(person)
    .execute(conn)
    .await
    .context("destroying a data key")?;
    Ok(destroyed.rows_affected() == 1)
}

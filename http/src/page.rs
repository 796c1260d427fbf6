//! Pagination: `?limit=` (default 20, at most 100) and an opaque `?cursor=`.
//!
//! A cursor is base64 of JSON the client could have written itself, so everything decoded from
//! one is checked before it is bound into SQL: its text as a body's is (no NUL), its timestamps
//! through `CursorTime`, its numbers where they are read.

use crate::problem::{FieldError, FieldErrors};
use crate::ApiError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Datelike, Utc};
use serde::de::DeserializeOwned;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;

/// `limit` and `cursor` of a listing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page: default 20, at most 100.
    #[serde(default, deserialize_with = "deserialize_limit")]
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[serde(default, deserialize_with = "deserialize_cursor")]
    pub cursor: Option<String>,
}

/// A `limit` below 1 is refused as the query is read, so that it is reported beside every
/// other invalid parameter. For `deserialize_with` on the `limit` of a listing's parameters.
pub fn deserialize_limit<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    match Option::<i64>::deserialize(deserializer)? {
        Some(limit) if limit < 1 => Err(D::Error::custom(format!(
            "limit must be at least 1, not {limit}"
        ))),
        limit => Ok(limit),
    }
}

/// A `cursor` that is no document this API could have written is refused as the query is
/// read, so that it is reported beside every other invalid parameter. Whether its position
/// fits the listing is for the listing to say ([`PageParams::cursor`]). For `deserialize_with`
/// on the `cursor` of a listing's parameters.
pub fn deserialize_cursor<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let cursor = Option::<String>::deserialize(deserializer)?;
    if let Some(cursor) = &cursor {
        let document = URL_SAFE_NO_PAD
            .decode(cursor)
            .ok()
            .and_then(|bytes| crate::extract::from_own_json::<serde_json::Value>(&bytes).ok());
        if document.is_none() {
            return Err(D::Error::custom(CURSOR_NOT_ISSUED));
        }
    }
    Ok(cursor)
}

const CURSOR_NOT_ISSUED: &str =
    "cursor is not one this API issued: pass back a `next_cursor` as it was given";

impl PageParams {
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(limit) if limit >= 1 => Ok(limit.min(MAX_LIMIT)),
            Some(limit) => Err(invalid_limit(format!(
                "limit must be at least 1, not {limit}"
            ))),
        }
    }

    /// The limit, refusing one above the maximum instead of capping it: the admin routes, whose
    /// callers are scripts, are told rather than silently given fewer items than they asked for.
    pub fn strict_limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            Some(limit) if limit > MAX_LIMIT => Err(invalid_limit(format!(
                "limit must be at most {MAX_LIMIT}, not {limit}"
            ))),
            _ => self.limit(),
        }
    }

    /// The limit and the decoded cursor, or 400 naming every one of them that is invalid.
    pub fn read<T: DeserializeOwned>(&self) -> Result<(i64, Option<T>), ApiError> {
        let mut errors = FieldErrors::default();
        let limit = errors.check(self.limit())?;
        let cursor = errors.check(self.cursor())?;
        errors.finish()?;
        match (limit, cursor) {
            (Some(limit), Some(cursor)) => Ok((limit, cursor)),
            _ => Err(invalid_cursor()),
        }
    }

    /// The decoded cursor, or `None` on the first page.
    pub fn cursor<T: DeserializeOwned>(&self) -> Result<Option<T>, ApiError> {
        let Some(cursor) = &self.cursor else {
            return Ok(None);
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(cursor)
            .map_err(|_| invalid_cursor())?;
        crate::extract::from_own_json(&bytes)
            .map(Some)
            .map_err(|_| invalid_cursor())
    }

    /// The limit, and where a listing ordered by `(timestamp, id)`, newest first, resumes (as
    /// `newest_first_position`), or 400 naming every one of them that is invalid.
    pub fn newest_first(&self) -> Result<(i64, (DateTime<Utc>, uuid::Uuid)), ApiError> {
        let (limit, cursor) = self.read::<(CursorTime, uuid::Uuid)>()?;
        let position = cursor.map_or((DateTime::<Utc>::MAX_UTC, uuid::Uuid::max()), |(at, id)| {
            (at.0, id)
        });
        Ok((limit, position))
    }

    /// Where a listing ordered by `(timestamp, id)`, newest first, resumes: before the cursor's
    /// position, or before everything on the first page.
    pub fn newest_first_position(&self) -> Result<(DateTime<Utc>, uuid::Uuid), ApiError> {
        Ok(self
            .cursor::<(CursorTime, uuid::Uuid)>()?
            .map_or((DateTime::<Utc>::MAX_UTC, uuid::Uuid::max()), |(at, id)| {
                (at.0, id)
            }))
    }
}

/// A cursor that did not decode to a position this API could have issued.
pub fn invalid_cursor() -> ApiError {
    ApiError::invalid_parameters(vec![FieldError::query("cursor", CURSOR_NOT_ISSUED)])
}

fn invalid_limit(detail: String) -> ApiError {
    ApiError::invalid_parameters(vec![FieldError::query("limit", detail)])
}

/// A timestamp from a cursor. Those the API issues are times events happened; a crafted one
/// could be any time chrono parses, and Postgres refuses those before 4713 BC (a 500), so only
/// years 1 to 9999 are accepted.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(try_from = "DateTime<Utc>")]
pub struct CursorTime(pub DateTime<Utc>);

impl TryFrom<DateTime<Utc>> for CursorTime {
    type Error = &'static str;

    fn try_from(at: DateTime<Utc>) -> Result<Self, Self::Error> {
        if (1..=9999).contains(&at.year()) {
            Ok(Self(at))
        } else {
            Err("a cursor's time lies in the years 1 to 9999")
        }
    }
}

/// Encodes a position in a listing as an opaque cursor.
pub fn encode_cursor(position: &impl Serialize) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(position).unwrap_or_default())
}

/// A page of a listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from `limit + 1` fetched rows: the extra row only says there is more.
    pub fn from_rows<K: Serialize>(mut rows: Vec<T>, limit: i64, key: impl Fn(&T) -> K) -> Self {
        let more = rows.len() as i64 > limit;
        rows.truncate(limit.max(0) as usize);
        let next_cursor = if more {
            rows.last().map(|last| encode_cursor(&key(last)))
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }
}

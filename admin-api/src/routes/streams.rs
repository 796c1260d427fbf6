//! One stream's raw events, and its state at any point of its history (time travel).

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use commerce_http::page::{Page, PageParams};
use commerce_http::{ApiError, ApiPath, ApiQuery};
use commerce_store::history::{self, RecordedEvent, AGGREGATE_TYPES};
use commerce_store::AsOf;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::{redact, Admin, AdminState};

/// An event of a stream, as recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamEvent {
    pub sequence: i64,
    pub position: i64,
    pub event_type: String,
    pub event_version: String,
    pub recorded_at: DateTime<Utc>,
    /// The event at its type's current version, as every reader sees it (credentials redacted).
    #[schema(value_type = Object)]
    pub payload: Value,
    /// `correlation_id`, `causation_id`, `actor`, `idempotency_key`.
    #[schema(value_type = Object)]
    pub metadata: Value,
}

impl From<RecordedEvent> for StreamEvent {
    fn from(event: RecordedEvent) -> Self {
        Self {
            sequence: event.sequence,
            position: event.position,
            event_type: event.event_type,
            event_version: event.event_version,
            recorded_at: event.recorded_at,
            payload: redact::credentials(event.payload),
            metadata: event.metadata,
        }
    }
}

/// A page of one stream's events, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamPage {
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The stream's last sequence.
    pub version: i64,
    pub items: Vec<StreamEvent>,
    pub next_cursor: Option<String>,
}

/// An aggregate's state folded up to a point.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamState {
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The sequence of the last event folded.
    pub version: i64,
    /// The global position of the last event folded.
    pub position: i64,
    /// When the last event folded was recorded.
    pub recorded_at: DateTime<Utc>,
    /// The aggregate as the domain holds it, serialised (credentials redacted).
    #[schema(value_type = Object)]
    pub state: Value,
}

/// `?as_of=`: how far to fold.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AsOfParams {
    /// A global position (an integer) or an RFC 3339 instant; absent, every event.
    pub as_of: Option<String>,
}

/// 404 for an aggregate type the domain does not have.
pub(crate) fn known_type(aggregate_type: &str) -> Result<(), ApiError> {
    if history::is_aggregate_type(aggregate_type) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!(
            "no aggregate type `{aggregate_type}`; the store holds {}",
            AGGREGATE_TYPES.join(", ")
        )))
    }
}

/// The raw events of one stream, with their metadata, oldest first.
#[utoipa::path(get, path = "/v1/admin/streams/{aggregate_type}/{id}", tag = "admin", security(("bearer" = [])),
    params(("aggregate_type" = String, Path), ("id" = String, Path), PageParams),
    responses((status = 200, description = "the stream's events", body = StreamPage),
              (status = 400, description = "bad cursor or limit", body = commerce_http::problem::Problem),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "not an admin", body = commerce_http::problem::Problem),
              (status = 404, description = "unknown aggregate type, or a stream with no event", body = commerce_http::problem::Problem)))]
pub async fn stream(
    _: Admin,
    State(state): State<AdminState>,
    ApiPath((aggregate_type, id)): ApiPath<(String, String)>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<StreamPage>, ApiError> {
    known_type(&aggregate_type)?;
    let limit = page.strict_limit()?;
    let after: i64 = page.cursor()?.unwrap_or(0);
    let version = history::stream_version(&state.pool, &aggregate_type, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{aggregate_type} {id} has no events")))?;
    let events =
        history::stream_events(&state.pool, &aggregate_type, &id, after, limit + 1).await?;
    let page = Page::from_rows(events, limit, |e| e.sequence);
    Ok(Json(StreamPage {
        aggregate_type,
        aggregate_id: id,
        version,
        items: page.items.into_iter().map(StreamEvent::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Time travel: the aggregate's state folded, through its own `apply`, up to a position or an
/// instant.
#[utoipa::path(get, path = "/v1/admin/streams/{aggregate_type}/{id}/state", tag = "admin", security(("bearer" = [])),
    params(("aggregate_type" = String, Path), ("id" = String, Path), AsOfParams),
    responses((status = 200, description = "the state as of that point", body = StreamState),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "not an admin", body = commerce_http::problem::Problem),
              (status = 404, description = "unknown aggregate type, or no event of the stream at or before that point", body = commerce_http::problem::Problem),
              (status = 422, description = "`as_of` is neither a position nor an RFC 3339 instant", body = commerce_http::problem::Problem)))]
pub async fn state_as_of(
    _: Admin,
    State(state): State<AdminState>,
    ApiPath((aggregate_type, id)): ApiPath<(String, String)>,
    ApiQuery(params): ApiQuery<AsOfParams>,
) -> Result<Json<StreamState>, ApiError> {
    known_type(&aggregate_type)?;
    let as_of = match params.as_of.as_deref() {
        None => AsOf::Now,
        Some(text) => parse_as_of(text)?,
    };
    let folded = history::state_as_of(&state.pool, &aggregate_type, &id, as_of)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "{aggregate_type} {id} has no event at or before that point"
            ))
        })?;
    Ok(Json(StreamState {
        aggregate_type,
        aggregate_id: id,
        version: folded.version,
        position: folded.position,
        recorded_at: folded.recorded_at,
        state: redact::credentials(folded.state),
    }))
}

/// A position (digits) or an RFC 3339 instant.
fn parse_as_of(text: &str) -> Result<AsOf, ApiError> {
    let text = text.trim();
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<i64>() {
            Ok(position) if position >= 0 => Ok(AsOf::Position(position)),
            _ => Err(ApiError::unprocessable(
                "as_of: a position is a whole number from 0",
            )),
        };
    }
    // A `+` of an offset left unencoded in the query arrives as a space.
    let instant = DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_rfc3339(&text.replace(' ', "+")))
        .map_err(|_| {
            ApiError::unprocessable(
                "as_of must be a position (an integer) or an RFC 3339 instant such as 2026-12-01T10:00:00Z",
            )
        })?;
    Ok(AsOf::Instant(instant.with_timezone(&Utc)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_is_a_position_or_an_instant() {
        assert_eq!(parse_as_of("42").unwrap(), AsOf::Position(42));
        let at = DateTime::parse_from_rfc3339("2026-12-01T10:00:00+01:00").unwrap();
        assert_eq!(
            parse_as_of("2026-12-01T10:00:00+01:00").unwrap(),
            AsOf::Instant(at.with_timezone(&Utc))
        );
        assert_eq!(
            parse_as_of("2026-12-01T10:00:00 01:00").unwrap(),
            AsOf::Instant(at.with_timezone(&Utc))
        );
        for bad in [
            "-1",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "99999999999999999999",
            "",
        ] {
            assert_eq!(
                parse_as_of(bad).unwrap_err().status(),
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "{bad}"
            );
        }
    }
}

//! Checkout sagas by state, the stuck ones first; one saga with its steps; waking one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use commerce_domain::checkout::CheckoutSaga;
use commerce_http::page::{encode_cursor, PageParams};
use commerce_http::{ApiError, ApiPath, ApiQuery};
use commerce_projections::dead_letters::{self, RetryOutcome};
use commerce_sagas::deadlines;
use commerce_store::history;
use commerce_store::repository::{fold_as_of, fold_many};
use commerce_store::AsOf;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::streams::StreamEvent;
use crate::sagas::{self, SagaRow};
use crate::{Admin, AdminState};

/// Sagas read per round when a `state` filter skips some.
const CHUNK: i64 = 200;
/// Most sagas one request looks at: a page may then hold fewer than `limit` items, with a
/// `next_cursor` to read on, rather than one request scanning every saga for a rare state.
const MAX_SCAN: usize = 2_000;

/// A saga, as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct SagaItem {
    /// The saga's id: its order's.
    pub saga_id: Uuid,
    /// Its recorded stage: `not_started`, `reserving`, `authorizing`, `confirming`,
    /// `confirmed`, `compensating`, `cancelled`, `returning` or `refunded`.
    pub state: String,
    pub stuck: bool,
    /// Any of `past_deadline`, `lease_lost`, `parked_event`.
    pub stuck_reasons: Vec<String>,
    /// When a worker is to look at it next; absent when nothing is scheduled.
    pub due_at: Option<DateTime<Utc>>,
    /// Claims since it was last scheduled afresh.
    pub attempts: Option<i32>,
    /// The parked event that left it stuck.
    pub dead_letter_id: Option<i64>,
    /// Its last recorded step, or when it got stuck.
    pub updated_at: Option<DateTime<Utc>>,
}

fn item(row: &SagaRow, saga: Option<&CheckoutSaga>) -> SagaItem {
    SagaItem {
        saga_id: row.saga_id,
        state: saga
            .map_or_else(|| CheckoutSaga::default().stage(), |s| s.stage())
            .to_owned(),
        stuck: row.stuck(),
        stuck_reasons: row.stuck_reasons().into_iter().map(str::to_owned).collect(),
        due_at: row.due_at,
        attempts: row.attempts,
        dead_letter_id: row.dead_letter_id,
        updated_at: row.updated_at,
    }
}

/// Which sagas to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SagaParams {
    /// `true`: only the stuck ones; `false`: only the others.
    pub stuck: Option<bool>,
    /// Only those at this stage.
    pub state: Option<String>,
    /// Items per page: default 20, at most 100.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of sagas.
#[derive(Debug, Serialize, ToSchema)]
pub struct SagaPage {
    pub items: Vec<SagaItem>,
    pub next_cursor: Option<String>,
}

/// Sagas, the stuck ones first, then by id.
#[utoipa::path(get, path = "/v1/admin/sagas", tag = "admin", security(("bearer" = [])),
    params(SagaParams),
    responses((status = 200, description = "sagas; a page may hold fewer than `limit` with more to read", body = SagaPage),
              (status = 400, description = "bad cursor or limit", body = commerce_http::problem::Problem),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "not an admin", body = commerce_http::problem::Problem),
              (status = 422, description = "unknown state", body = commerce_http::problem::Problem)))]
pub async fn list(
    _: Admin,
    State(state): State<AdminState>,
    ApiQuery(params): ApiQuery<SagaParams>,
) -> Result<Json<SagaPage>, ApiError> {
    if let Some(stage) = &params.state {
        if !CheckoutSaga::STAGES.contains(&stage.as_str()) {
            return Err(ApiError::unprocessable(format!(
                "state must be one of {}",
                CheckoutSaga::STAGES.join(", ")
            )));
        }
    }
    let page = PageParams {
        limit: params.limit,
        cursor: params.cursor,
    };
    let limit = page.strict_limit()?;
    let mut after: Option<(i32, Uuid)> = page.cursor()?;
    let chunk = if params.state.is_some() {
        CHUNK
    } else {
        limit + 1
    };
    let mut items: Vec<(SagaItem, (i32, Uuid))> = Vec::new();
    let mut scanned = 0;
    let more = 'scan: loop {
        let rows = sagas::page(&state.pool, params.stuck, after, chunk).await?;
        let ids: Vec<String> = rows.iter().map(|r| r.saga_id.to_string()).collect();
        let folded = fold_many::<CheckoutSaga>(&state.pool, &ids).await?;
        for row in &rows {
            let saga = folded.get(&row.saga_id.to_string()).map(|f| &f.state);
            let found = item(row, saga);
            if params.state.as_ref().is_none_or(|s| *s == found.state) {
                items.push((found, row.key()));
                if items.len() as i64 > limit {
                    break 'scan true;
                }
            }
            after = Some(row.key());
            scanned += 1;
        }
        if (rows.len() as i64) < chunk {
            break false;
        }
        if scanned >= MAX_SCAN {
            break true;
        }
    };
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|(_, key)| encode_cursor(key))
    } else if more {
        after.map(|key| encode_cursor(&key))
    } else {
        None
    };
    Ok(Json(SagaPage {
        items: items.into_iter().map(|(item, _)| item).collect(),
        next_cursor,
    }))
}

/// One saga with its folded state and recorded steps.
#[derive(Debug, Serialize, ToSchema)]
pub struct SagaDetail {
    #[serde(flatten)]
    pub item: SagaItem,
    pub order_id: Uuid,
    /// The saga aggregate as its steps left it (the `CheckoutSaga` of the domain), serialised.
    /// (`state` is its stage, as in the list.)
    #[schema(value_type = Object)]
    pub saga: Value,
    /// Its recorded steps, oldest first.
    pub events: Vec<StreamEvent>,
}

/// One saga.
#[utoipa::path(get, path = "/v1/admin/sagas/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "the saga", body = SagaDetail),
              (status = 400, description = "the id is not a UUID", body = commerce_http::problem::Problem),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "not an admin", body = commerce_http::problem::Problem),
              (status = 404, description = "no such saga", body = commerce_http::problem::Problem)))]
pub async fn show(
    _: Admin,
    State(state): State<AdminState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<SagaDetail>, ApiError> {
    let row = sagas::one(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no saga {id}")))?;
    let saga_id = id.to_string();
    let folded = fold_as_of::<CheckoutSaga>(&state.pool, &saga_id, AsOf::Now).await?;
    let saga = folded.as_ref().map(|f| &f.state);
    // A saga's steps are a few dozen at most: all of them.
    let events = history::stream_events(&state.pool, CheckoutSaga::TYPE, &saga_id, 0, i64::MAX)
        .await?
        .into_iter()
        .map(StreamEvent::from)
        .collect();
    Ok(Json(SagaDetail {
        item: item(&row, saga),
        order_id: id,
        saga: serde_json::to_value(saga).map_err(anyhow::Error::from)?,
        events,
    }))
}

/// A saga made due.
#[derive(Debug, Serialize, ToSchema)]
pub struct SagaRetried {
    pub saga_id: Uuid,
    pub due_at: DateTime<Utc>,
}

/// Resumes a saga from its recorded state: when a parked event of its order left it stuck,
/// that event is retried first; then it is woken now, as its order's events wake it, and a
/// worker takes it up.
#[utoipa::path(post, path = "/v1/admin/sagas/{id}/retry", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 202, description = "it is due now", body = SagaRetried),
              (status = 400, description = "the id is not a UUID", body = commerce_http::problem::Problem),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "not an admin", body = commerce_http::problem::Problem),
              (status = 404, description = "no such saga", body = commerce_http::problem::Problem)))]
pub async fn retry(
    _: Admin,
    State(state): State<AdminState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<(StatusCode, Json<SagaRetried>), ApiError> {
    sagas::one(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no saga {id}")))?;
    if let Some(stuck) = dead_letters::stuck_saga(&state.pool, id).await? {
        if let Some(trigger) = state.projection(&stuck.projection) {
            let outcome = dead_letters::retry(&state.pool, trigger, stuck.dead_letter_id).await?;
            if let RetryOutcome::Failed(_) = outcome {
                // The trigger only wakes the saga, which the wake-up below does too: the saga
                // goes on, and the event stays parked for the operator to look into.
                tracing::warn!(saga = %id, dead_letter_id = stuck.dead_letter_id, "the saga's parked event failed again; waking the saga directly");
            }
        }
    }
    let mut tx = state.pool.begin().await.map_err(anyhow::Error::from)?;
    dead_letters::clear_stuck_saga(&mut *tx, id).await?;
    let due_at = deadlines::wake_now(&mut tx, id, "operator_retry").await?;
    tx.commit().await.map_err(anyhow::Error::from)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(SagaRetried {
            saga_id: id,
            due_at,
        }),
    ))
}

//! The webhook routes: subscriptions by admins (any events) and sellers (their own), the
//! public catalogue of event types, the delivery log, redelivery, replay and secret rotation.
//! A webhook is its owner's and the admins': to anyone else it does not exist (404).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use commerce_domain::values::{Validate, Violations};
use commerce_domain::Role;
use commerce_http::page::{Page, PageParams};
use commerce_http::{ApiError, ApiPath, ApiQuery, Caller, JwtKeys, RequestContext, ValidJson};
use commerce_store::idempotency::{self, IdempotencyRecord, StoredResponse};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::PgPool;
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use crate::address;
use crate::catalogue::{self, EventType};
use crate::fan_out;
use crate::subscription::{self, Owner, Webhook};

/// How long a rotated-out secret goes on signing beside the new one.
pub const ROTATION_OVERLAP: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);
/// The most event type patterns of one webhook.
pub const MAX_EVENT_TYPES: usize = 100;

/// What the webhook handlers share.
#[derive(Clone)]
pub struct WebhookState {
    pub pool: PgPool,
    pub jwt: JwtKeys,
    /// Receivers on loopback and private addresses are accepted (`COMMERCE_WEBHOOK_ALLOW_PRIVATE`).
    pub allow_private: bool,
}

impl axum::extract::FromRef<WebhookState> for JwtKeys {
    fn from_ref(state: &WebhookState) -> Self {
        state.jwt.clone()
    }
}

/// Every webhook route.
pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route("/v1/webhooks/event-types", get(event_types))
        .route("/v1/webhooks", post(create).get(list))
        .route("/v1/webhooks/{id}", get(show).delete(remove))
        .route("/v1/webhooks/{id}/secret", post(rotate))
        .route("/v1/webhooks/{id}/deliveries", get(deliveries))
        .route(
            "/v1/webhooks/{id}/deliveries/{delivery_id}/retry",
            post(retry),
        )
        .route("/v1/webhooks/{id}/replay", post(replay))
        .with_state(state)
}

/// The OpenAPI description of the webhook routes.
#[derive(OpenApi)]
#[openapi(paths(
    event_types,
    create,
    list,
    show,
    remove,
    rotate,
    deliveries,
    retry,
    replay
))]
pub struct ApiDoc;

/// Only admins and sellers have webhooks.
fn subscriber(caller: Caller) -> Result<Owner, ApiError> {
    caller.require(&[Role::Admin, Role::Seller])?;
    Ok(if caller.is_admin() {
        Owner::Admin(caller.account_id.0)
    } else {
        Owner::Seller(caller.account_id.0)
    })
}

/// The webhook `id`, if the caller may see it: its owner or an admin.
async fn visible(state: &WebhookState, caller: Caller, id: Uuid) -> Result<Webhook, ApiError> {
    subscriber(caller)?;
    subscription::get(&state.pool, id)
        .await?
        .filter(|w| caller.is_admin() || w.owner.id() == caller.account_id.0)
        .ok_or_else(|| ApiError::not_found(format!("no webhook {id}")))
}

/// The public catalogue of event types.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventTypes {
    pub items: Vec<EventType>,
}

/// Every type of event a webhook can subscribe to. A subscription names types
/// (`order.OrderPlaced`), every type of an aggregate (`order.*`) or every type (`*`). Each
/// delivery is `POST`ed as `{type, event_id, position, occurred_at, aggregate_type,
/// aggregate_id, sequence, data}` (`data`: the event's fields, personal ones opened, or
/// `"forgotten"`), signed as Standard Webhooks specify; the OpenAPI document's `webhooks`
/// section describes each type's body.
#[utoipa::path(get, path = "/v1/webhooks/event-types", tag = "webhooks",
    responses((status = 200, description = "the catalogue", body = EventTypes)))]
pub async fn event_types() -> Json<EventTypes> {
    Json(EventTypes {
        items: catalogue::all(),
    })
}

/// A new subscription.
#[derive(Debug, Serialize, eserde::Deserialize, ToSchema)]
pub struct CreateWebhook {
    /// Where deliveries are `POST`ed: `http` or `https`, a public address.
    pub url: String,
    /// Event types (`order.OrderPlaced`), `<aggregate type>.*` or `*`.
    pub event_types: Vec<String>,
}

impl Validate for CreateWebhook {
    fn violations(&self) -> Violations {
        let mut violations = Violations::default();
        violations.check(&["url"], address::parse(&self.url));
        if self.event_types.is_empty() || self.event_types.len() > MAX_EVENT_TYPES {
            violations.add(
                &["event_types"],
                format!("event_types must name 1 to {MAX_EVENT_TYPES} event types"),
            );
        }
        for (i, pattern) in self.event_types.iter().enumerate() {
            if let Some(refusal) = catalogue::refusal(pattern, false) {
                violations.add(&["event_types".to_owned(), i.to_string()], refusal);
            }
        }
        violations
    }
}

/// A webhook as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub webhook_id: Uuid,
    pub url: String,
    pub event_types: Vec<String>,
    /// `admin` (any events) or `seller` (its own).
    pub owner_role: String,
    pub owner_id: Uuid,
    pub created_at: DateTime<Utc>,
}

impl From<Webhook> for WebhookView {
    fn from(webhook: Webhook) -> Self {
        let owner_role = match webhook.owner {
            Owner::Admin(_) => "admin",
            Owner::Seller(_) => "seller",
        };
        Self {
            webhook_id: webhook.webhook_id,
            owner_id: webhook.owner.id(),
            owner_role: owner_role.to_owned(),
            url: webhook.url,
            event_types: webhook.event_types,
            created_at: webhook.created_at,
        }
    }
}

/// A new webhook, with its secret: shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// `whsec_` + base64 of the signing key.
    pub secret: String,
}

/// Subscribes a URL to event types: an admin to any, a seller to those about its own products,
/// SKUs and order lines (and receives only those, an order's data limited to its lines).
/// Deliveries start with the events recorded from now on; `replay` sends earlier ones.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key and body is answered as the first request was (with the webhook's current secret); another body is 422")),
    request_body = CreateWebhook,
    responses((status = 201, description = "subscribed; `secret` is shown only now", body = CreatedWebhook,
                headers(("Location" = String, description = "the webhook"))),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "neither an admin nor a seller", body = commerce_http::problem::Problem),
              (status = 422, description = "a bad URL (not http(s), or a loopback or private address) or event type, each in `errors[]`; or an `Idempotency-Key` used for another request", body = commerce_http::problem::Problem)))]
pub async fn create(
    State(state): State<WebhookState>,
    caller: Caller,
    context: RequestContext,
    ValidJson(request): ValidJson<CreateWebhook>,
) -> Result<Response, ApiError> {
    let owner = subscriber(caller)?;
    let idempotent = Idempotent::of(&context, caller, "POST /v1/webhooks", &request);
    if let Some(previous) = idempotent.previous(&state.pool).await? {
        return previous.replay(&state.pool).await;
    }
    if matches!(owner, Owner::Seller(_)) {
        for (i, pattern) in request.event_types.iter().enumerate() {
            if let Some(refusal) = catalogue::refusal(pattern, true) {
                return Err(ApiError::invalid_field(
                    &format!("/event_types/{i}"),
                    refusal,
                ));
            }
        }
    }
    let url = address::parse(&request.url)
        .map_err(|refusal| ApiError::invalid_field("/url", refusal.0))?;
    address::check_host(&url, state.allow_private)
        .await
        .map_err(|refusal| ApiError::invalid_field("/url", refusal.0))?;
    let mut event_types = request.event_types;
    event_types.sort();
    event_types.dedup();
    let mut tx = state.pool.begin().await.map_err(anyhow::Error::from)?;
    let (webhook, key) = subscription::create(&mut tx, owner, url.as_str(), &event_types).await?;
    let location = format!("/v1/webhooks/{}", webhook.webhook_id);
    let view = serde_json::to_value(WebhookView::from(webhook)).map_err(anyhow::Error::from)?;
    let answer = Answer {
        status: StatusCode::CREATED,
        body: view,
        location: Some(location),
        secret: key.to_secret(),
    };
    idempotent.commit(tx, &state.pool, answer).await
}

/// Webhooks, newest first: an admin sees every one, a seller its own.
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, description = "webhooks", body = Page<WebhookView>),
              (status = 400, description = "bad `limit` or `cursor`", body = commerce_http::problem::Problem),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "neither an admin nor a seller", body = commerce_http::problem::Problem)))]
pub async fn list(
    State(state): State<WebhookState>,
    caller: Caller,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<Page<WebhookView>>, ApiError> {
    let owner = subscriber(caller)?;
    let (limit, before) = page.newest_first()?;
    let only = match owner {
        Owner::Admin(_) => None,
        Owner::Seller(id) => Some(id),
    };
    let rows = subscription::list_page(&state.pool, only, before, limit + 1).await?;
    let page = Page::from_rows(rows, limit, |w| (w.created_at, w.webhook_id));
    Ok(Json(Page {
        items: page.items.into_iter().map(WebhookView::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One webhook.
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "the webhook", body = WebhookView),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "neither an admin nor a seller", body = commerce_http::problem::Problem),
              (status = 404, description = "no such webhook of the caller's", body = commerce_http::problem::Problem)))]
pub async fn show(
    State(state): State<WebhookState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<WebhookView>, ApiError> {
    Ok(Json(visible(&state, caller, id).await?.into()))
}

/// Unsubscribes; pending deliveries are cancelled.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "unsubscribed"),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "neither an admin nor a seller", body = commerce_http::problem::Problem),
              (status = 404, description = "no such webhook of the caller's", body = commerce_http::problem::Problem)))]
pub async fn remove(
    State(state): State<WebhookState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    visible(&state, caller, id).await?;
    subscription::delete(&state.pool, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A rotated secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedSecret {
    pub webhook_id: Uuid,
    /// The new secret: `whsec_` + base64 of the key.
    pub secret: String,
    /// Until then deliveries carry a signature by the previous secret too.
    pub previous_valid_until: DateTime<Utc>,
}

/// Rotates the webhook's secret. For 24 hours every delivery is signed with both the new and
/// the previous secret (two signatures in `webhook-signature`), so a receiver can switch
/// without missing a delivery.
#[utoipa::path(post, path = "/v1/webhooks/{id}/secret", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header, description = "a retried rotation with the same key rotates once")),
    responses((status = 200, description = "the new secret, shown only now", body = RotatedSecret),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "neither an admin nor a seller", body = commerce_http::problem::Problem),
              (status = 404, description = "no such webhook of the caller's", body = commerce_http::problem::Problem)))]
pub async fn rotate(
    State(state): State<WebhookState>,
    caller: Caller,
    context: RequestContext,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    visible(&state, caller, id).await?;
    let idempotent = Idempotent::of(
        &context,
        caller,
        &format!("POST /v1/webhooks/{id}/secret"),
        &(),
    );
    if let Some(previous) = idempotent.previous(&state.pool).await? {
        return previous.replay(&state.pool).await;
    }
    let mut tx = state.pool.begin().await.map_err(anyhow::Error::from)?;
    let key = subscription::rotate(&mut tx, id, ROTATION_OVERLAP)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no webhook {id}")))?;
    let overlap = chrono::Duration::from_std(ROTATION_OVERLAP).map_err(anyhow::Error::from)?;
    let answer = Answer {
        status: StatusCode::OK,
        body: json!({ "webhook_id": id, "previous_valid_until": Utc::now() + overlap }),
        location: None,
        secret: key.to_secret(),
    };
    idempotent.commit(tx, &state.pool, answer).await
}

/// An answer that shows a secret. What an `Idempotency-Key` remembers of it is everything but
/// the secret, which is never stored twice: a retry is shown the webhook's current one.
struct Answer {
    status: StatusCode,
    /// The body without the secret; it names the webhook (`webhook_id`).
    body: Value,
    location: Option<String>,
    secret: String,
}

impl Answer {
    fn into_response(self) -> Response {
        let mut body = self.body;
        body["secret"] = Value::String(self.secret);
        let mut response = (self.status, Json(body)).into_response();
        if let Some(location) = self
            .location
            .and_then(|l| axum::http::HeaderValue::from_str(&l).ok())
        {
            response.headers_mut().insert(header::LOCATION, location);
        }
        response
    }
}

/// The `Idempotency-Key` of a webhook command that must not happen twice: a second
/// subscription, or a second rotation, which would retire the secret the client never saw.
/// Keys are the caller's (as every command's), in the same table.
struct Idempotent(Option<Key>);

/// A key, whose it is, and the fingerprint of the request it came with.
struct Key {
    scope: String,
    key: String,
    request_hash: Vec<u8>,
}

/// What an earlier request with the key was answered.
struct Previous(StoredResponse);

impl Idempotent {
    fn of(context: &RequestContext, caller: Caller, route: &str, body: &impl Serialize) -> Self {
        Self(context.idempotency_key.clone().map(|key| Key {
            scope: caller.account_id.to_string(),
            key,
            request_hash: idempotency::request_hash(route, body),
        }))
    }

    /// The answer to an earlier request with this key: the same request gets it again,
    /// another one is 422.
    async fn previous(&self, pool: &PgPool) -> Result<Option<Previous>, ApiError> {
        let Some(key) = &self.0 else {
            return Ok(None);
        };
        let Some(previous) = idempotency::lookup(pool, &key.scope, &key.key).await? else {
            return Ok(None);
        };
        if previous.request_hash != key.request_hash {
            return Err(ApiError::unprocessable(
                "this Idempotency-Key was already used for a different request",
            ));
        }
        Ok(Some(Previous(previous.response)))
    }

    /// Commits the command with its key, and answers; when a concurrent request with the same
    /// key committed first, this one is rolled back and answered as that one was.
    async fn commit(
        self,
        mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
        pool: &PgPool,
        answer: Answer,
    ) -> Result<Response, ApiError> {
        if let Some(Key {
            scope,
            key,
            request_hash,
        }) = self.0
        {
            let record = IdempotencyRecord {
                scope,
                key,
                request_hash,
                response: StoredResponse {
                    status: answer.status.as_u16(),
                    body: Some(answer.body.clone()),
                    location: answer.location.clone(),
                    etag: None,
                    position: None,
                },
            };
            if !idempotency::insert(&record, &mut tx).await? {
                tx.rollback().await.map_err(anyhow::Error::from)?;
                let stored = idempotency::lookup(pool, &record.scope, &record.key)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("an idempotency key taken and gone"))?;
                return Previous(stored.response).replay(pool).await;
            }
        }
        tx.commit().await.map_err(anyhow::Error::from)?;
        Ok(answer.into_response())
    }
}

impl Previous {
    /// The remembered answer, with the webhook's current secret.
    async fn replay(self, pool: &PgPool) -> Result<Response, ApiError> {
        let body = self.0.body.unwrap_or_default();
        let id: Uuid = body["webhook_id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("a remembered webhook answer names no webhook"))?;
        let key = subscription::signing_keys(pool, id)
            .await?
            .and_then(|keys| keys.into_iter().next())
            .ok_or_else(|| ApiError::not_found(format!("webhook {id} was deleted")))?;
        Ok(Answer {
            status: StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::OK),
            body,
            location: self.0.location,
            secret: key.to_secret(),
        }
        .into_response())
    }
}

/// Which deliveries to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// Only deliveries in this state.
    #[param(inline)]
    pub state: Option<DeliveryState>,
    /// Items per page: default 20, at most 100.
    #[serde(default, deserialize_with = "commerce_http::page::deserialize_limit")]
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[serde(default, deserialize_with = "commerce_http::page::deserialize_cursor")]
    pub cursor: Option<String>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not delivered yet: waiting for its next attempt.
    Pending,
    /// A 2xx answered it.
    Delivered,
    /// Retried for the whole window without a 2xx.
    Failed,
    /// Its webhook was deleted first.
    Cancelled,
}

/// One attempt of a delivery.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Attempt {
    pub attempt: i32,
    pub attempted_at: DateTime<Utc>,
    /// The receiver's status; absent when no answer came.
    pub status: Option<i32>,
    pub latency_ms: i32,
    /// Why no answer came (refused, timed out, unreachable).
    pub error: Option<String>,
    /// The start of the receiver's answer.
    pub response_excerpt: Option<String>,
}

/// One event's delivery to the webhook, with every attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct Delivery {
    pub delivery_id: i64,
    /// The `webhook-id` header: the same for every attempt, retry and replay of this event.
    pub message_id: String,
    /// The event's type, as the body's `type`.
    #[serde(rename = "type")]
    pub event_type: String,
    pub event_id: Uuid,
    pub position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub state: DeliveryState,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Oldest first.
    pub attempts: Vec<Attempt>,
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    delivery_id: i64,
    message_id: String,
    event_type: String,
    position: i64,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    state: DeliveryState,
    next_attempt_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

/// The delivery log, newest first: each event's delivery with every attempt (time, status,
/// latency, the start of the answer).
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path), DeliveryParams),
    responses((status = 200, description = "deliveries", body = Page<Delivery>),
              (status = 400, description = "bad `state`, `limit` or `cursor`", body = commerce_http::problem::Problem),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "neither an admin nor a seller", body = commerce_http::problem::Problem),
              (status = 404, description = "no such webhook of the caller's", body = commerce_http::problem::Problem)))]
pub async fn deliveries(
    State(state): State<WebhookState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(params): ApiQuery<DeliveryParams>,
) -> Result<Json<Page<Delivery>>, ApiError> {
    visible(&state, caller, id).await?;
    let page = PageParams {
        limit: params.limit,
        cursor: params.cursor,
    };
    let limit = page.strict_limit()?;
    let before: i64 = page.cursor()?.unwrap_or(i64::MAX);
    let rows: Vec<DeliveryRow> = sqlx::query_as(
        "SELECT delivery_id, message_id, event_type, position, aggregate_type, aggregate_id, \
         sequence, state, next_attempt_at, created_at, finished_at FROM webhook_deliveries \
         WHERE webhook_id = $1 AND delivery_id < $2 AND ($3::text IS NULL OR state = $3) \
         ORDER BY delivery_id DESC LIMIT $4",
    )
    .bind(id)
    .bind(before)
    .bind(params.state)
    .bind(limit + 1)
    .fetch_all(&state.pool)
    .await
    .map_err(anyhow::Error::from)?;
    let page = Page::from_rows(rows, limit, |d| d.delivery_id);
    let ids: Vec<i64> = page.items.iter().map(|d| d.delivery_id).collect();
    let attempts: Vec<(i64, Attempt)> = sqlx::query_as::<_, AttemptRow>(
        "SELECT delivery_id, attempt, attempted_at, status, latency_ms, error, response_excerpt \
         FROM webhook_attempts WHERE delivery_id = ANY($1) ORDER BY delivery_id, attempt",
    )
    .bind(&ids)
    .fetch_all(&state.pool)
    .await
    .map_err(anyhow::Error::from)?
    .into_iter()
    .map(|row| (row.delivery_id, row.attempt))
    .collect();
    let mut attempts_of: std::collections::HashMap<i64, Vec<Attempt>> = Default::default();
    for (delivery, attempt) in attempts {
        attempts_of.entry(delivery).or_default().push(attempt);
    }
    let items = page
        .items
        .into_iter()
        .map(|row| Delivery {
            delivery_id: row.delivery_id,
            message_id: row.message_id,
            event_type: catalogue::type_name(&row.aggregate_type, &row.event_type),
            event_id: fan_out::event_id(&row.aggregate_type, &row.aggregate_id, row.sequence),
            position: row.position,
            sequence: row.sequence,
            next_attempt_at: matches!(row.state, DeliveryState::Pending)
                .then_some(row.next_attempt_at),
            state: row.state,
            created_at: row.created_at,
            finished_at: row.finished_at,
            attempts: attempts_of.remove(&row.delivery_id).unwrap_or_default(),
            aggregate_type: row.aggregate_type,
            aggregate_id: row.aggregate_id,
        })
        .collect();
    Ok(Json(Page {
        items,
        next_cursor: page.next_cursor,
    }))
}

#[derive(sqlx::FromRow)]
struct AttemptRow {
    delivery_id: i64,
    #[sqlx(flatten)]
    attempt: Attempt,
}

/// A delivery queued again.
#[derive(Debug, Serialize, ToSchema)]
pub struct Redelivery {
    pub delivery_id: i64,
    /// `pending`: it is attempted now, then retried as a new delivery would be.
    pub state: DeliveryState,
}

/// Redelivers one event: a failed or delivered delivery is attempted again now, with a new
/// retry window (a pending one is attempted now). Same `webhook-id`.
#[utoipa::path(post, path = "/v1/webhooks/{id}/deliveries/{delivery_id}/retry", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("delivery_id" = i64, Path)),
    responses((status = 202, description = "queued", body = Redelivery),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "neither an admin nor a seller", body = commerce_http::problem::Problem),
              (status = 404, description = "no such webhook or delivery of the caller's", body = commerce_http::problem::Problem),
              (status = 409, description = "the delivery was cancelled with its webhook", body = commerce_http::problem::Problem)))]
pub async fn retry(
    State(state): State<WebhookState>,
    caller: Caller,
    ApiPath((id, delivery_id)): ApiPath<(Uuid, i64)>,
) -> Result<(StatusCode, Json<Redelivery>), ApiError> {
    visible(&state, caller, id).await?;
    let current: Option<(DeliveryState,)> = sqlx::query_as(
        "SELECT state FROM webhook_deliveries WHERE delivery_id = $1 AND webhook_id = $2",
    )
    .bind(delivery_id)
    .bind(id)
    .fetch_optional(&state.pool)
    .await
    .map_err(anyhow::Error::from)?;
    match current {
        None => {
            return Err(ApiError::not_found(format!(
                "webhook {id} has no delivery {delivery_id}"
            )))
        }
        Some((DeliveryState::Cancelled,)) => {
            return Err(ApiError::conflict(format!(
                "delivery {delivery_id} was cancelled"
            )))
        }
        Some(_) => {}
    }
    // A redelivery is a fresh start: due now, a new retry window; a lease held by a worker
    // attempting it right now stays (its outcome is then recorded, and this one follows).
    sqlx::query(
        "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = now(), \
         window_opened_at = now(), attempts_before_window = attempts, finished_at = NULL \
         WHERE delivery_id = $1 AND state <> 'cancelled'",
    )
    .bind(delivery_id)
    .execute(&state.pool)
    .await
    .map_err(anyhow::Error::from)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Redelivery {
            delivery_id,
            state: DeliveryState::Pending,
        }),
    ))
}

/// From where to replay.
#[derive(Debug, eserde::Deserialize, ToSchema)]
pub struct ReplayRequest {
    /// The first position of the store to send again (1: from the beginning).
    pub from_position: i64,
}

impl Validate for ReplayRequest {
    fn violations(&self) -> Violations {
        let mut violations = Violations::default();
        if self.from_position < 1 {
            violations.add(&["from_position"], "from_position must be at least 1");
        }
        violations
    }
}

/// What a replay queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct Replay {
    pub from_position: i64,
    /// Deliveries queued: every event since `from_position` that the webhook takes.
    pub enqueued: u64,
}

/// Sends again every event the webhook takes from `from_position` on (to the last event
/// recorded now), each aggregate's in order, with the same `webhook-id` as its first delivery
/// so receivers dedupe. Events recorded before the webhook existed are included.
#[utoipa::path(post, path = "/v1/webhooks/{id}/replay", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = ReplayRequest,
    responses((status = 202, description = "queued", body = Replay),
              (status = 401, description = "not signed in", body = commerce_http::problem::Problem),
              (status = 403, description = "neither an admin nor a seller", body = commerce_http::problem::Problem),
              (status = 404, description = "no such webhook of the caller's", body = commerce_http::problem::Problem),
              (status = 422, description = "`from_position` below 1", body = commerce_http::problem::Problem)))]
pub async fn replay(
    State(state): State<WebhookState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ValidJson(request): ValidJson<ReplayRequest>,
) -> Result<(StatusCode, Json<Replay>), ApiError> {
    let webhook = visible(&state, caller, id).await?;
    let enqueued = fan_out::replay(&state.pool, &webhook, request.from_position).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Replay {
            from_position: request.from_position,
            enqueued,
        }),
    ))
}

//! Runs a command the way every route needs: idempotency keys, `If-Match`, and a response
//! carrying `ETag` and `X-Event-Position`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use commerce_http::{ApiError, Caller, RequestContext};
use commerce_store::idempotency::{self, PreviousRequest};
use commerce_store::{
    Claim, CommandOptions, Companion, IdempotencyKey, Metadata, Repository, Respond, StoredResponse,
};
use cqrs_es::Aggregate;
use serde::Serialize;

use crate::errors::{command_error, Refusal};
use crate::CommandState;

/// The header naming the global position of a command's last event.
pub(crate) const EVENT_POSITION: &str = "x-event-position";

/// A command's response, as sent and as remembered for idempotent retries.
#[derive(Debug)]
pub struct Reply(pub StoredResponse);

impl Reply {
    /// A response to send and remember; the pipeline adds its ETag and position.
    pub fn stored(status: StatusCode, body: Option<serde_json::Value>) -> StoredResponse {
        StoredResponse {
            status: status.as_u16(),
            body,
            location: None,
            etag: None,
            position: None,
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let stored = self.0;
        let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
        let mut response = match stored.body {
            Some(body) => (status, axum::Json(body)).into_response(),
            None => status.into_response(),
        };
        let headers = response.headers_mut();
        let mut set = |name: header::HeaderName, value: String| {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        };
        if let Some(etag) = stored.etag {
            set(header::ETAG, format!("\"{etag}\""));
        }
        if let Some(position) = stored.position {
            set(
                header::HeaderName::from_static(EVENT_POSITION),
                position.to_string(),
            );
        }
        if let Some(location) = stored.location {
            set(header::LOCATION, location);
        }
        response
    }
}

/// One command request: who sent it, its headers, and a fingerprint of what it asked.
pub(crate) struct CommandRequest {
    pub context: RequestContext,
    pub caller: Option<Caller>,
    request_hash: Vec<u8>,
}

impl CommandRequest {
    /// `route` names the method and path; `body` is the parsed body (so formatting does not count).
    pub fn new(
        context: RequestContext,
        caller: Option<Caller>,
        route: &str,
        body: &impl Serialize,
    ) -> Self {
        Self {
            context,
            caller,
            request_hash: idempotency::request_hash(route, body),
        }
    }

    pub fn metadata(&self) -> Metadata {
        Metadata {
            correlation_id: self.context.correlation_id,
            causation_id: self.context.correlation_id,
            actor: self.caller.map(|c| c.account_id.0),
            idempotency_key: self.context.idempotency_key.clone(),
            ..Metadata::default()
        }
    }

    fn scope(&self) -> String {
        self.caller
            .map(|c| c.account_id.to_string())
            .unwrap_or_else(|| "anonymous".to_owned())
    }

    /// The key to record with the command, if the client sent one.
    pub fn idempotency_key<A>(&self, respond: &Respond<A>) -> Option<IdempotencyKey<A>> {
        let key = self.context.idempotency_key.clone()?;
        Some(IdempotencyKey {
            scope: self.scope(),
            key,
            request_hash: self.request_hash.clone(),
            respond: respond.clone(),
        })
    }

    /// The remembered response when this key was used before: the same response for the same
    /// request, 422 for another request under the same key.
    pub async fn previous_reply(&self, state: &CommandState) -> Result<Option<Reply>, ApiError> {
        let Some(key) = &self.context.idempotency_key else {
            return Ok(None);
        };
        let Some(PreviousRequest {
            request_hash,
            response,
        }) = idempotency::lookup(state.pool(), &self.scope(), key).await?
        else {
            return Ok(None);
        };
        if request_hash != self.request_hash {
            return Err(ApiError::unprocessable(
                "this Idempotency-Key was already used for a different request",
            ));
        }
        Ok(Some(Reply(response)))
    }
}

/// Runs `command` on aggregate `id` and answers with `respond`'s view of the new state.
pub(crate) async fn run<A>(
    state: &CommandState,
    repository: &Repository<A>,
    id: &str,
    command: A::Command,
    request: &CommandRequest,
    claims: Vec<Claim>,
    respond: Respond<A>,
) -> Result<Reply, ApiError>
where
    A: Aggregate<Services = ()> + Clone + 'static,
    A::Error: Refusal,
    A::Command: Clone + Send + Sync + 'static,
    A::Error: Send + 'static,
{
    run_with::<A, A>(
        state, repository, id, command, request, claims, respond, None,
    )
    .await
}

/// [`run`], committing `companion`'s change to a second aggregate in the same transaction.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_with<A, B>(
    state: &CommandState,
    repository: &Repository<A>,
    id: &str,
    command: A::Command,
    request: &CommandRequest,
    claims: Vec<Claim>,
    respond: Respond<A>,
    companion: Option<Companion<'_, A, B>>,
) -> Result<Reply, ApiError>
where
    A: Aggregate<Services = ()> + Clone + 'static,
    A::Error: Refusal,
    A::Command: Clone + Send + Sync + 'static,
    A::Error: Send + 'static,
    B: Aggregate<Services = ()> + Clone + 'static,
    B::Command: Clone,
{
    if let Some(reply) = request.previous_reply(state).await? {
        return Ok(reply);
    }
    let options = CommandOptions {
        metadata: request.metadata(),
        expected_version: request.context.if_match,
        claims,
        idempotency: request.idempotency_key(&respond),
    };
    match repository
        .execute_with(id, command, options, companion)
        .await
    {
        Ok(outcome) => {
            let mut response = respond(&outcome.state);
            response.etag.get_or_insert(outcome.version);
            response.position = outcome.position.or(response.position);
            Ok(Reply(response))
        }
        Err(error) => {
            // A concurrent request with the same key may have won, and changed the state this one
            // was refused on: its response is the answer.
            if let Some(reply) = request.previous_reply(state).await? {
                return Ok(reply);
            }
            Err(command_error(error))
        }
    }
}

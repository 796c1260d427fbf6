//! The sandbox payment provider: a real HTTP server whose behaviour is chosen by the card token,
//! so that every way a provider can fail is reproducible on one machine.
//!
//! | token | answer |
//! |---|---|
//! | `tok_ok` | 200, authorised |
//! | `tok_decline` | 402 `{code, reason: "card declined"}` |
//! | `tok_flaky` | 503 on the first two attempts for that payment, then 200 |
//! | `tok_slow` | 200 after 2 s; the authorisation happens even if the client gave up |
//! | `tok_timeout` | never: the request is held until the client gives up or the server stops |
//! | anything else | 402 `{code, reason: "unknown token"}` |
//!
//! Every POST needs an `Idempotency-Key`; a repeated key gets the first answer back (waiting for
//! it if the first request is still in flight) and nothing is done again; the same key with a
//! different body gets 422. Capture beyond the authorisation, capture without one and refund
//! beyond the capture get 409. A void with nothing authorised is a 200 no-op, and it also voids an
//! authorisation still in flight when that one lands, so a compensation that voids "just in case"
//! after a timeout leaves nothing held.
//!
//! `GET /v1/payments/{payment_id}` and `GET /v1/payments` show each payment with every call
//! recorded, so tests can assert there was exactly one successful authorisation. State is kept
//! in memory: it is a sandbox.
//!
//! This file is the HTTP side (routes, waiting, shutdown); `ledger` keeps the payments and the
//! replies stored by idempotency key, `payment` holds one payment's rules, `views` the records
//! served.

mod ledger;
mod payment;
mod views;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::ledger::{Begin, Call, Ledger, Pending, Reply};
pub use self::views::{CallOutcome, CallView, PaymentStatus, PaymentView};
use crate::gateway::wire::{Step, IDEMPOTENCY_KEY};

/// How long `tok_slow` takes to answer.
const SLOW_ANSWER: Duration = Duration::from_secs(2);

/// Starts and serves the sandbox provider.
#[derive(Debug)]
pub struct Sandbox;

impl Sandbox {
    /// Bind `addr` (port 0 picks a free one) and serve in a background task until the handle
    /// is stopped or dropped.
    pub async fn start(addr: SocketAddr) -> anyhow::Result<SandboxHandle> {
        Self::start_with_cancel(addr, CancellationToken::new()).await
    }

    /// As [`Sandbox::start`], also stopping when `cancel` is cancelled. Stopping or dropping the
    /// handle cancels only a child of `cancel`, never `cancel` itself.
    pub async fn start_with_cancel(
        addr: SocketAddr,
        cancel: CancellationToken,
    ) -> anyhow::Result<SandboxHandle> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the payment sandbox to {addr}"))?;
        let addr = listener
            .local_addr()
            .context("reading the payment sandbox's address")?;
        let cancel = cancel.child_token();
        let task = tokio::spawn(Self::serve(listener, cancel.clone()));
        Ok(SandboxHandle {
            addr,
            cancel,
            task: Some(task),
        })
    }

    /// Serve on `listener` until `cancel` is cancelled, then stop gracefully: requests held
    /// open (`tok_timeout`, or waiting for `tok_slow`) are answered 503 so none outlives it.
    pub async fn serve(listener: TcpListener, cancel: CancellationToken) -> anyhow::Result<()> {
        let addr = listener
            .local_addr()
            .context("reading the payment sandbox's address")?;
        tracing::info!(%addr, "payment sandbox listening");
        axum::serve(
            commerce_http::listener::without_delay(listener),
            app(cancel.clone()),
        )
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
        .context("serving the payment sandbox")?;
        tracing::info!(%addr, "payment sandbox stopped");
        Ok(())
    }

    /// The sandbox's routes over fresh, empty state. Served this way, held requests end only
    /// when their client disconnects: prefer [`Sandbox::serve`], which can stop gracefully.
    pub fn router() -> Router {
        app(CancellationToken::new())
    }
}

/// A running sandbox. Dropping it stops the sandbox, as [`SandboxHandle::stop`] does without
/// waiting.
#[derive(Debug)]
pub struct SandboxHandle {
    addr: SocketAddr,
    cancel: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl SandboxHandle {
    /// The base URL to give the client, like `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cancelling this token stops the sandbox.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Stop and wait until every connection is closed.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.cancel.cancel();
        match self.task.take() {
            Some(task) => task.await.context("the payment sandbox task failed")?,
            None => Ok(()),
        }
    }
}

impl Drop for SandboxHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

#[derive(Clone)]
struct AppState {
    ledger: Arc<Mutex<Ledger>>,
    shutdown: CancellationToken,
}

impl AppState {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // The ledger is left consistent between statements, so a panic elsewhere poisons nothing.
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The answer of the request in flight, or 503 when the server stops first.
    async fn wait(&self, mut answer: watch::Receiver<Option<Reply>>) -> Reply {
        let settled = async move {
            let settled = answer.wait_for(Option::is_some).await.ok();
            settled.and_then(|reply| reply.clone())
        };
        tokio::select! {
            Some(reply) = settled => reply,
            () = self.shutdown.cancelled() => shutting_down(),
        }
    }

    /// `tok_slow`: authorise after the delay, whoever is still waiting.
    async fn land_later(self, pending: Pending) {
        tokio::select! {
            () = tokio::time::sleep(SLOW_ANSWER) => {}
            () = self.shutdown.cancelled() => return,
        }
        let reply = self.ledger().land(&pending);
        tracing::info!(payment_id = %pending.payment_id, "sandbox: late authorisation landed");
        pending.done.send_replace(Some(reply));
    }
}

fn shutting_down() -> Reply {
    Reply::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "shutting_down",
        "the sandbox is shutting down",
    )
}

fn app(shutdown: CancellationToken) -> Router {
    let state = AppState {
        ledger: Arc::default(),
        shutdown,
    };
    Router::new()
        .route("/v1/payments", get(list))
        .route("/v1/payments/{payment_id}", get(show))
        .route("/v1/payments/{payment_id}/authorize", post(authorize))
        .route("/v1/payments/{payment_id}/capture", post(capture))
        .route("/v1/payments/{payment_id}/void", post(void))
        .route("/v1/payments/{payment_id}/refund", post(refund))
        .with_state(state)
}

async fn list(State(app): State<AppState>) -> Response {
    Json(json!({ "items": app.ledger().views() })).into_response()
}

async fn show(State(app): State<AppState>, Path(payment_id): Path<String>) -> Response {
    Json(app.ledger().view(&payment_id)).into_response()
}

async fn authorize(
    app: State<AppState>,
    id: Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(app, id, Step::Authorize, headers, body).await
}

async fn capture(
    app: State<AppState>,
    id: Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(app, id, Step::Capture, headers, body).await
}

async fn void(app: State<AppState>, id: Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    handle(app, id, Step::Void, headers, body).await
}

async fn refund(
    app: State<AppState>,
    id: Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(app, id, Step::Refund, headers, body).await
}

/// Every POST: check the key and body, let the ledger decide, then answer now, late or never.
async fn handle(
    State(app): State<AppState>,
    Path(payment_id): Path<String>,
    step: Step,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|value| value.to_str().ok())
        .filter(|key| !key.is_empty());
    let begin = {
        let mut ledger = app.ledger();
        match (key, Call::parse(step, &body)) {
            (None, _) => {
                let reason = "the Idempotency-Key header is required";
                let reply =
                    Reply::error(StatusCode::BAD_REQUEST, "missing_idempotency_key", reason);
                Begin::Reply(ledger.reject(&payment_id, step, "", reply))
            }
            (Some(key), Err(reason)) => {
                let reply =
                    Reply::error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", &reason);
                Begin::Reply(ledger.reject(&payment_id, step, key, reply))
            }
            (Some(key), Ok(call)) => ledger.begin(&payment_id, key, call),
        }
    };
    let reply = match begin {
        Begin::Reply(reply) => reply,
        Begin::Wait(answer) => app.wait(answer).await,
        Begin::Slow(pending) => {
            let answer = pending.done.subscribe();
            // Detached, so the authorisation lands even when this client gives up.
            tokio::spawn(app.clone().land_later(pending));
            app.wait(answer).await
        }
        Begin::Hold => {
            app.shutdown.cancelled().await;
            shutting_down()
        }
    };
    (reply.status, Json(reply.body)).into_response()
}

//! A webhook receiver for tests: records every request it gets and answers as it is told, and
//! an implementation of the Standard Webhooks check written from the specification, apart from
//! the engine's signing code.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: Bytes,
    /// What the receiver answered.
    pub status: u16,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a delivery's body is JSON")
    }
}

#[derive(Default)]
struct Script {
    /// Answer 500 to this many requests first.
    failures_left: AtomicUsize,
    /// Answer 500 to everything.
    always_fail: std::sync::atomic::AtomicBool,
    /// Hold each answer this long (milliseconds).
    delay_ms: std::sync::atomic::AtomicU64,
    /// Requests being answered now.
    in_flight: AtomicUsize,
    /// Requests whose sender went away before the answer.
    abandoned: AtomicUsize,
    /// The body of every answer.
    answer: Mutex<Vec<u8>>,
    received: Mutex<Vec<Received>>,
}

/// A receiver listening on loopback.
pub struct Receiver {
    pub url: String,
    script: Arc<Script>,
    stop: CancellationToken,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Receiver {
    pub async fn start() -> Self {
        let script = Arc::new(Script::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(script.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await
                .unwrap();
        });
        Self { url, script, stop }
    }

    /// Answers 500 to the next `n` requests.
    pub fn fail_next(&self, n: usize) {
        self.script.failures_left.store(n, Ordering::SeqCst);
    }

    /// Answers 500 to every request from now on.
    pub fn fail_always(&self) {
        self.script.always_fail.store(true, Ordering::SeqCst);
    }

    /// Holds every answer `delay` long: a sender can be stopped while a request is open.
    pub fn answer_after(&self, delay: Duration) {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.script.delay_ms.store(millis, Ordering::SeqCst);
    }

    /// Requests whose sender went away before they were answered (never delivered).
    pub fn abandoned(&self) -> usize {
        self.script.abandoned.load(Ordering::SeqCst)
    }

    /// Requests received and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.script.in_flight.load(Ordering::SeqCst)
    }

    /// Answers with this body (any bytes) from now on.
    pub fn answer_with(&self, body: &[u8]) {
        *self.script.answer.lock().unwrap() = body.to_vec();
    }

    /// Answers 2xx again.
    pub fn recover(&self) {
        self.script.always_fail.store(false, Ordering::SeqCst);
        self.script.failures_left.store(0, Ordering::SeqCst);
    }

    /// Every request answered so far (a request whose sender went away before the answer is
    /// not: it was never delivered).
    pub fn received(&self) -> Vec<Received> {
        self.script.received.lock().unwrap().clone()
    }

    /// Waits (30 s at most) until `done` holds of the requests received.
    pub async fn wait_until(&self, what: &str, done: impl Fn(&[Received]) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !done(&self.received()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the receiver never got {what}; it got {:#?}",
                self.received()
                    .iter()
                    .map(|r| (r.status, r.json()["type"].clone()))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn receive(
    State(script): State<Arc<Script>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Vec<u8>) {
    let delay = script.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        script.in_flight.fetch_add(1, Ordering::SeqCst);
        // Dropped with the request when its sender goes away: then it is not in flight.
        struct Leaving<'a> {
            script: &'a Script,
            answered: bool,
        }
        impl Drop for Leaving<'_> {
            fn drop(&mut self) {
                self.script.in_flight.fetch_sub(1, Ordering::SeqCst);
                if !self.answered {
                    self.script.abandoned.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        let mut leaving = Leaving {
            script: &script,
            answered: false,
        };
        tokio::time::sleep(Duration::from_millis(delay)).await;
        leaving.answered = true;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let fail = script.always_fail.load(Ordering::SeqCst)
        || script
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    let answer = script.answer.lock().unwrap().clone();
    let status = if fail {
        StatusCode::INTERNAL_SERVER_ERROR
    } else if answer.is_empty() {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::OK
    };
    script.received.lock().unwrap().push(Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body,
        status: status.as_u16(),
    });
    (status, answer)
}

/// The Standard Webhooks check, from the specification: the secret is `whsec_` + base64 of
/// the key; the signed content is `{id}.{timestamp}.{body}`; HMAC-SHA256; the header holds
/// space-separated `v1,<base64>` signatures, one of which must match (compared in constant
/// time); a timestamp more than 5 minutes away is refused.
pub fn verify(secret: &str, received: &Received) -> Result<(), String> {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").ok_or("not a whsec_ secret")?)
        .map_err(|e| e.to_string())?;
    let timestamp: i64 = received
        .timestamp
        .parse()
        .map_err(|_| "bad webhook-timestamp")?;
    if (chrono::Utc::now().timestamp() - timestamp).abs() > 5 * 60 {
        return Err("webhook-timestamp too far from now".into());
    }
    let mut signed = Vec::new();
    signed.extend_from_slice(received.id.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(received.timestamp.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(&received.body);
    for candidate in received.signature.split(' ') {
        let Some(encoded) = candidate.strip_prefix("v1,") else {
            continue;
        };
        let Ok(signature) = STANDARD.decode(encoded) else {
            continue;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
        mac.update(&signed);
        if mac.verify_slice(&signature).is_ok() {
            return Ok(());
        }
    }
    Err("no signature matches".into())
}

//! The payment gateway client against the sandbox provider, over real HTTP on 127.0.0.1:0.
//! Each test starts its own sandbox, so they run in parallel and share nothing.

// Helpers outside `#[test]` functions are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use commerce_domain::services::{GatewayError, PaymentGateway};
use commerce_domain::{Currency, Money, PaymentId};
use commerce_sagas::gateway::{
    CallOutcome, GatewayClientConfig, HttpGateway, PaymentStatus, PaymentView, Sandbox,
    SandboxHandle, Step,
};

fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::parse("EUR").unwrap())
}

async fn spawn_sandbox() -> SandboxHandle {
    Sandbox::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// Fast retries, and a timeout far above anything but `tok_slow` and `tok_timeout`.
fn fast() -> GatewayClientConfig {
    GatewayClientConfig {
        request_timeout: Duration::from_secs(5),
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
    }
}

fn client(sandbox: &SandboxHandle, config: GatewayClientConfig) -> HttpGateway {
    HttpGateway::new(&sandbox.url(), config).unwrap()
}

async fn payment(sandbox: &SandboxHandle, payment_id: PaymentId) -> PaymentView {
    let url = format!("{}/v1/payments/{payment_id}", sandbox.url());
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// The payment once the sandbox's late (`tok_slow`) answer went out.
async fn after_late_answer(sandbox: &SandboxHandle, payment_id: PaymentId) -> PaymentView {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let view = payment(sandbox, payment_id).await;
        if view.successful_authorizations > 0 {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "the late authorisation never landed: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn outcomes(view: &PaymentView, step: Step) -> Vec<CallOutcome> {
    view.calls
        .iter()
        .filter(|call| call.step == step)
        .map(|call| call.outcome)
        .collect()
}

#[tokio::test]
async fn tok_ok_authorises_and_capture_and_refund_stay_within_what_was_authorised() {
    let sandbox = spawn_sandbox().await;
    let gateway = client(&sandbox, fast());
    let payment_id = PaymentId::new();

    let authorization_id = gateway
        .authorize(payment_id, eur(1000), "tok_ok", WITHIN)
        .await
        .unwrap();
    assert!(!authorization_id.is_empty());

    let over = gateway.capture(payment_id, eur(1001)).await;
    assert!(
        matches!(over, Err(GatewayError::Declined(ref reason)) if reason.contains("409")),
        "{over:?}"
    );
    gateway.capture(payment_id, eur(1000)).await.unwrap();

    let over = gateway.refund(payment_id, eur(1001)).await;
    assert!(
        matches!(over, Err(GatewayError::Declined(ref reason)) if reason.contains("409")),
        "{over:?}"
    );
    gateway.refund(payment_id, eur(400)).await.unwrap();

    let view = payment(&sandbox, payment_id).await;
    assert_eq!(view.status, PaymentStatus::Refunded);
    assert_eq!(
        view.authorization_id.as_deref(),
        Some(authorization_id.as_str())
    );
    assert_eq!(view.authorized_amount, Some(eur(1000)));
    assert_eq!(view.captured_amount, Some(eur(1000)));
    assert_eq!(view.refunded_amount, Some(eur(400)));
    assert_eq!(view.successful_authorizations, 1);
    assert_eq!(
        outcomes(&view, Step::Capture),
        [CallOutcome::Rejected, CallOutcome::Captured]
    );
    let keys: Vec<_> = view
        .calls
        .iter()
        .map(|call| call.idempotency_key.clone())
        .collect();
    assert_eq!(
        keys,
        ["authorize", "capture", "capture", "refund", "refund"]
            .map(|step| format!("{payment_id}:{step}"))
    );
}

#[tokio::test]
async fn capture_without_authorisation_and_refund_without_capture_are_refused() {
    let sandbox = spawn_sandbox().await;
    let gateway = client(&sandbox, fast());
    let payment_id = PaymentId::new();

    let capture = gateway.capture(payment_id, eur(100)).await;
    assert!(
        matches!(capture, Err(GatewayError::Declined(_))),
        "{capture:?}"
    );
    gateway
        .authorize(payment_id, eur(100), "tok_ok", WITHIN)
        .await
        .unwrap();
    let refund = gateway.refund(payment_id, eur(100)).await;
    assert!(
        matches!(refund, Err(GatewayError::Declined(_))),
        "{refund:?}"
    );

    let view = payment(&sandbox, payment_id).await;
    assert_eq!(view.status, PaymentStatus::Authorized);
    assert_eq!(view.captured_amount, Some(eur(0)));
}

#[tokio::test]
async fn tok_decline_is_declined_and_recorded() {
    let sandbox = spawn_sandbox().await;
    let gateway = client(&sandbox, fast());
    let payment_id = PaymentId::new();

    let result = gateway
        .authorize(payment_id, eur(500), "tok_decline", WITHIN)
        .await;
    assert_eq!(result, Err(GatewayError::Declined("card declined".into())));

    let view = payment(&sandbox, payment_id).await;
    assert_eq!(view.status, PaymentStatus::Declined);
    assert_eq!(view.successful_authorizations, 0);
    assert_eq!(outcomes(&view, Step::Authorize), [CallOutcome::Declined]);
}

#[tokio::test]
async fn an_unknown_token_is_declined() {
    let sandbox = spawn_sandbox().await;
    let gateway = client(&sandbox, fast());

    let result = gateway
        .authorize(PaymentId::new(), eur(500), "tok_nonsense", WITHIN)
        .await;
    assert_eq!(result, Err(GatewayError::Declined("unknown token".into())));
}

#[tokio::test]
async fn tok_flaky_is_retried_to_exactly_one_authorisation() {
    let sandbox = spawn_sandbox().await;
    let gateway = client(&sandbox, fast());
    let payment_id = PaymentId::new();

    gateway
        .authorize(payment_id, eur(700), "tok_flaky", WITHIN)
        .await
        .unwrap();

    let view = payment(&sandbox, payment_id).await;
    assert_eq!(view.status, PaymentStatus::Authorized);
    assert_eq!(view.successful_authorizations, 1);
    assert_eq!(
        outcomes(&view, Step::Authorize),
        [
            CallOutcome::Unavailable,
            CallOutcome::Unavailable,
            CallOutcome::Authorized
        ]
    );
    let key = format!("{payment_id}:authorize");
    assert!(view.calls.iter().all(|call| call.idempotency_key == key));
}

#[tokio::test]
async fn exhausted_retries_are_unavailable_and_a_later_call_still_authorises_once() {
    let sandbox = spawn_sandbox().await;
    let gateway = client(
        &sandbox,
        GatewayClientConfig {
            max_attempts: 2,
            ..fast()
        },
    );
    let payment_id = PaymentId::new();

    let result = gateway
        .authorize(payment_id, eur(700), "tok_flaky", WITHIN)
        .await;
    assert!(
        matches!(result, Err(GatewayError::Unavailable(_))),
        "{result:?}"
    );
    gateway
        .authorize(payment_id, eur(700), "tok_flaky", WITHIN)
        .await
        .unwrap();

    let view = payment(&sandbox, payment_id).await;
    assert_eq!(view.successful_authorizations, 1);
}

#[tokio::test]
async fn retrying_authorize_returns_the_same_authorisation_without_charging_again() {
    let sandbox = spawn_sandbox().await;
    let gateway = client(&sandbox, fast());
    let payment_id = PaymentId::new();

    let first = gateway
        .authorize(payment_id, eur(900), "tok_ok", WITHIN)
        .await
        .unwrap();
    let again = gateway
        .authorize(payment_id, eur(900), "tok_ok", WITHIN)
        .await
        .unwrap();
    assert_eq!(first, again);

    let view = payment(&sandbox, payment_id).await;
    assert_eq!(view.successful_authorizations, 1);
    assert_eq!(
        outcomes(&view, Step::Authorize),
        [CallOutcome::Authorized, CallOutcome::Replayed]
    );
}

/// How long the tests' authorisations may wait for an answer.
const WITHIN: Duration = Duration::from_secs(5);

#[tokio::test]
async fn an_authorisation_waits_until_its_deadline_not_the_request_timeout() {
    let sandbox = spawn_sandbox().await;
    let config = GatewayClientConfig {
        request_timeout: Duration::from_millis(300),
        ..fast()
    };
    let gateway = client(&sandbox, config);
    // tok_slow answers after 2 s: far past the request timeout, well within the deadline.
    let answer = gateway
        .authorize(PaymentId::new(), eur(100), "tok_slow", WITHIN)
        .await;
    assert!(answer.is_ok(), "{answer:?}");
}

#[tokio::test]
async fn tok_timeout_times_out_at_the_deadline_and_a_void_is_harmless() {
    let sandbox = spawn_sandbox().await;
    let config = GatewayClientConfig {
        request_timeout: Duration::from_millis(300),
        ..fast()
    };
    let gateway = client(&sandbox, config);
    let payment_id = PaymentId::new();

    let started = Instant::now();
    let result = gateway
        .authorize(
            payment_id,
            eur(100),
            "tok_timeout",
            Duration::from_millis(300),
        )
        .await;
    assert_eq!(result, Err(GatewayError::Timeout));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );

    gateway.void(payment_id).await.unwrap();
    let view = payment(&sandbox, payment_id).await;
    assert_eq!(view.status, PaymentStatus::None);
    assert_eq!(view.successful_authorizations, 0);
    assert_eq!(outcomes(&view, Step::Authorize), [CallOutcome::Held]);
    assert_eq!(outcomes(&view, Step::Void), [CallOutcome::NoOp]);
}

#[tokio::test]
async fn tok_slow_times_out_and_the_late_authorisation_is_voided_by_a_later_void() {
    let sandbox = spawn_sandbox().await;
    let config = GatewayClientConfig {
        request_timeout: Duration::from_millis(500),
        ..fast()
    };
    let gateway = client(&sandbox, config);
    let payment_id = PaymentId::new();

    let result = gateway
        .authorize(payment_id, eur(100), "tok_slow", Duration::from_millis(500))
        .await;
    assert_eq!(result, Err(GatewayError::Timeout));

    let view = after_late_answer(&sandbox, payment_id).await;
    assert_eq!(view.status, PaymentStatus::Authorized);
    gateway.void(payment_id).await.unwrap();

    let view = payment(&sandbox, payment_id).await;
    assert_eq!(view.status, PaymentStatus::Voided);
    assert_eq!(view.successful_authorizations, 1);
    assert_eq!(outcomes(&view, Step::Void), [CallOutcome::Voided]);
}

#[tokio::test]
async fn a_void_right_after_a_timeout_also_voids_the_authorisation_landing_later() {
    let sandbox = spawn_sandbox().await;
    let config = GatewayClientConfig {
        request_timeout: Duration::from_millis(500),
        ..fast()
    };
    let gateway = client(&sandbox, config);
    let payment_id = PaymentId::new();

    let result = gateway
        .authorize(payment_id, eur(100), "tok_slow", Duration::from_millis(500))
        .await;
    assert_eq!(result, Err(GatewayError::Timeout));
    gateway.void(payment_id).await.unwrap();
    assert_eq!(
        payment(&sandbox, payment_id).await.status,
        PaymentStatus::None
    );

    let view = after_late_answer(&sandbox, payment_id).await;
    assert_eq!(view.status, PaymentStatus::Voided);
    assert_eq!(view.successful_authorizations, 1);
    assert_eq!(outcomes(&view, Step::Authorize), [CallOutcome::Authorized]);
}

#[tokio::test]
async fn a_void_with_nothing_authorised_is_ok() {
    let sandbox = spawn_sandbox().await;
    let gateway = client(&sandbox, fast());
    let payment_id = PaymentId::new();

    gateway.void(payment_id).await.unwrap();
    gateway.void(payment_id).await.unwrap();

    let view = payment(&sandbox, payment_id).await;
    assert_eq!(view.status, PaymentStatus::None);
    assert_eq!(
        outcomes(&view, Step::Void),
        [CallOutcome::NoOp, CallOutcome::Replayed]
    );
}

#[tokio::test]
async fn an_unreachable_provider_is_unavailable_after_the_retries() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gateway = HttpGateway::new(&format!("http://127.0.0.1:{port}"), fast()).unwrap();

    let result = gateway
        .authorize(PaymentId::new(), eur(100), "tok_ok", WITHIN)
        .await;
    assert!(
        matches!(result, Err(GatewayError::Unavailable(ref why)) if why.contains("3 attempts")),
        "{result:?}"
    );
}

#[tokio::test]
async fn the_sandbox_requires_an_idempotency_key_and_refuses_one_reused_for_another_body() {
    let sandbox = spawn_sandbox().await;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/payments/p-1/authorize", sandbox.url());
    let body = |amount: i64| serde_json::json!({ "amount": { "amount": amount, "currency": "EUR" }, "token": "tok_ok" });

    let no_key = http.post(&url).json(&body(100)).send().await.unwrap();
    assert_eq!(no_key.status(), 400);
    let first = http
        .post(&url)
        .header("Idempotency-Key", "k")
        .json(&body(100))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let other = http
        .post(&url)
        .header("Idempotency-Key", "k")
        .json(&body(200))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 422);

    let list: serde_json::Value = reqwest::get(format!("{}/v1/payments", sandbox.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"][0]["payment_id"], "p-1");
    assert_eq!(list["items"][0]["successful_authorizations"], 1);
}

#[tokio::test]
async fn stopping_the_sandbox_releases_held_requests() {
    let sandbox = spawn_sandbox().await;
    let gateway = client(&sandbox, fast());
    let held = tokio::spawn(async move {
        gateway
            .authorize(PaymentId::new(), eur(100), "tok_timeout", WITHIN)
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    tokio::time::timeout(Duration::from_secs(2), sandbox.stop())
        .await
        .expect("the sandbox stops despite a held request")
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(2), held)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(result, Err(GatewayError::Unavailable(_))),
        "{result:?}"
    );
}

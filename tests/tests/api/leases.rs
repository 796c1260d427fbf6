//! A saga worker that outlives its lease writes nothing: whatever answer its payment call
//! finally brings, the order ends as the worker that took the saga over decided.

use std::sync::Arc;
use std::time::Duration;

use commerce_domain::services::{GatewayError, GatewayFuture, PaymentGateway};
use commerce_domain::{Money, PaymentId};
use commerce_sagas::checkout::Run;
use commerce_sagas::deadlines;
use commerce_sagas::gateway::{GatewayClientConfig, HttpGateway};
use commerce_sagas::worker::Lease;
use commerce_sagas::{run_worker, SagaConfig, SagaDriver, WorkerConfig};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::helpers::{spawn_app_with, TestApp};

/// A gateway whose authorisations hang until the test lets them give `answer`.
struct Held {
    release: watch::Receiver<bool>,
    answer: Result<String, GatewayError>,
}

impl PaymentGateway for Held {
    fn authorize<'a>(
        &'a self,
        _: PaymentId,
        _: Money,
        _: &'a str,
        _: Duration,
    ) -> GatewayFuture<'a, String> {
        let mut release = self.release.clone();
        Box::pin(async move {
            let _ = release.wait_for(|released| *released).await;
            self.answer.clone()
        })
    }
    fn capture(&self, _: PaymentId, _: Money) -> GatewayFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
    fn void(&self, _: PaymentId) -> GatewayFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
    fn refund(&self, _: PaymentId, _: Money) -> GatewayFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}

const LEASE: Duration = Duration::from_millis(800);

/// Places an order paid with `token`; a first worker drives it to the payment call, which
/// hangs past its lease; a second takes the saga over and settles it; then the first worker's
/// call answers `late`. Returns the app, the buyer, the order, and how the first run ended.
async fn a_late_answer(
    token: &str,
    late: Result<String, GatewayError>,
) -> (TestApp, String, uuid::Uuid, Run) {
    let app = spawn_app_with(|config| config.saga_workers = 0).await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "MUG", 1250, 5).await;
    let (buyer, order_id) = app.order_with("MUG", 3, token).await;
    let saga_config = SagaConfig {
        payment_timeout: Duration::from_secs(20),
        ..SagaConfig::default()
    };

    // The first worker claims the saga (once the trigger has woken it) with a short lease.
    let (release, released) = watch::channel(false);
    let held = Held {
        release: released,
        answer: late,
    };
    let first = SagaDriver::new(app.pool.clone(), Arc::new(held), saga_config.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let claim = loop {
        let claimed_at = tokio::time::Instant::now();
        let claimed = deadlines::claim(&app.pool, "first", 1, LEASE)
            .await
            .unwrap();
        if let Some(claim) = claimed.into_iter().next() {
            break Lease::new(app.pool.clone(), claim, LEASE, claimed_at);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the saga was never due"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let first_run = tokio::spawn(async move {
        let mut lease = claim;
        first.drive(&mut lease).await
    });
    app.wait_for_event(
        "checkout_saga",
        &order_id.to_string(),
        "AuthorizationRequested",
    )
    .await;

    // The second worker takes over once the lease lapses, and settles the saga.
    let gateway = HttpGateway::new(&app.gateway_url, GatewayClientConfig::default()).unwrap();
    let second = Arc::new(SagaDriver::new(
        app.pool.clone(),
        Arc::new(gateway),
        saga_config,
    ));
    let mut config = WorkerConfig::for_payment_timeout(Duration::ZERO);
    config.lease = LEASE;
    config.poll_interval = Duration::from_millis(50);
    let stop = CancellationToken::new();
    let worker = tokio::spawn(run_worker(second, config, stop.clone()));
    app.wait_for_order(order_id, &buyer, &["confirmed", "cancelled"])
        .await;
    app.wait_for_saga(order_id).await;
    stop.cancel();
    worker.await.unwrap().unwrap();

    // Now the first worker's call answers, long after it lost the saga.
    release.send(true).unwrap();
    let run = first_run.await.unwrap().unwrap();
    (app, buyer, order_id, run)
}

/// What every late answer must leave: the saga's last step is its completion, no unit stays
/// reserved, and the engine's payment agrees with the provider's.
async fn assert_settled_as_the_new_owner_decided(
    app: &TestApp,
    buyer: &str,
    order_id: uuid::Uuid,
    status: &str,
    on_hand: i64,
) {
    let order = app.wait_for_order(order_id, buyer, &[status]).await;
    assert_eq!(order["status"], status, "{order}");
    let saga = app.stream("checkout_saga", &order_id.to_string()).await;
    assert_eq!(
        saga.last().map(String::as_str),
        Some("SagaCompleted"),
        "a step after the saga completed: {saga:?}"
    );
    let stock = app.stock("MUG").await;
    assert_eq!(stock["reserved"], 0, "{stock}");
    assert_eq!(stock["on_hand"], on_hand, "{stock}");
    let at = app.last_position().await;
    let payment: Value = app.payment(order_id, buyer, at).await;
    let sandbox = app.sandbox_payment(order_id).await;
    assert_eq!(
        payment["status"], sandbox["status"],
        "{payment} vs {sandbox}"
    );
}

#[tokio::test]
async fn a_late_authorisation_is_not_recorded_on_an_order_the_new_owner_cancelled() {
    let (app, buyer, order_id, run) = a_late_answer("tok_decline", Ok("auth_late".into())).await;
    assert_eq!(run, Run::LeaseLost);
    assert_settled_as_the_new_owner_decided(&app, &buyer, order_id, "cancelled", 5).await;
    let payments = app
        .stream(
            "payment",
            &PaymentId::for_order(commerce_domain::OrderId(order_id)).to_string(),
        )
        .await;
    assert!(
        !payments.contains(&"PaymentAuthorized".to_owned()),
        "{payments:?}"
    );
}

#[tokio::test]
async fn a_late_decline_never_refunds_an_order_the_new_owner_confirmed() {
    let declined = Err(GatewayError::Declined("card declined".into()));
    let (app, buyer, order_id, run) = a_late_answer("tok_ok", declined).await;
    assert_eq!(run, Run::LeaseLost);
    assert_settled_as_the_new_owner_decided(&app, &buyer, order_id, "confirmed", 2).await;
}

#[tokio::test]
async fn a_late_timeout_never_cancels_an_order_the_new_owner_confirmed() {
    let (app, buyer, order_id, run) = a_late_answer("tok_ok", Err(GatewayError::Timeout)).await;
    assert_eq!(run, Run::LeaseLost);
    assert_settled_as_the_new_owner_decided(&app, &buyer, order_id, "confirmed", 2).await;
}

#[tokio::test]
async fn a_fencing_token_never_repeats_even_when_a_finished_saga_is_woken_again() {
    let app = spawn_app_with(|config| config.saga_workers = 0).await;
    let saga = uuid::Uuid::now_v7();
    let wake = || async {
        let mut conn = app.pool.acquire().await.unwrap();
        deadlines::wake(&mut conn, &[saga], &["test"])
            .await
            .unwrap();
    };
    let claim = || async {
        let claimed = deadlines::claim(&app.pool, "w", 10, LEASE).await.unwrap();
        claimed.into_iter().find(|c| c.saga_id == saga).unwrap()
    };
    wake().await;
    let first = claim().await;
    deadlines::finish(&app.pool, first, None).await.unwrap();
    // The row is gone; a later wake-up (a buyer cancelling a confirmed order) makes a new one.
    wake().await;
    let second = claim().await;
    assert_ne!(first.fence, second.fence);
    // The first claim's holder, resuming late, can neither renew, release nor finish.
    assert!(!deadlines::renew(&app.pool, first, LEASE).await.unwrap());
    deadlines::finish(&app.pool, first, None).await.unwrap();
    let held: Option<String> =
        sqlx::query_scalar("SELECT locked_by FROM saga_deadlines WHERE saga_id = $1")
            .bind(saga)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(held.as_deref(), Some("w"));
}

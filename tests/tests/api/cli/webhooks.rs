//! `webhooks list|deliveries|retry|replay` against a receiver of the test's own.

use super::operator;
use crate::receiver::Receiver;
use crate::webhooks::app;

#[tokio::test]
async fn webhooks_list_deliveries_retry_and_replay() {
    let app = app().await;
    let receiver = Receiver::start().await;
    let admin = app.admin_token().await;
    let (webhook, _) = app
        .subscribe(&admin, &receiver.url, &["product.ProductCreated"])
        .await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "CLI-HOOK", 100, 0).await;
    receiver.wait_until("the product", |r| r.len() == 1).await;

    let listed = operator(&app, &["webhooks", "list"]).await;
    assert!(listed.ok().contains(&webhook.to_string()), "{listed:?}");
    assert!(listed.ok().contains(&receiver.url), "{listed:?}");
    let listed = operator(&app, &["webhooks", "list", "--json"]).await.json();
    assert_eq!(listed["items"][0]["webhook_id"], webhook.to_string());

    let id = webhook.to_string();
    let log = operator(&app, &["webhooks", "deliveries", &id, "--json"])
        .await
        .json();
    let delivery = &log["items"][0];
    assert_eq!(delivery["state"], "delivered");
    assert_eq!(delivery["message_id"], receiver.received()[0].id.as_str());
    let table = operator(&app, &["webhooks", "deliveries", &id]).await;
    assert!(
        table.ok().contains("delivered") && table.ok().contains("204"),
        "{table:?}"
    );

    let delivery_id = delivery["delivery_id"].to_string();
    let retried = operator(&app, &["webhooks", "retry", &id, &delivery_id]).await;
    assert!(retried.ok().contains("queued"), "{retried:?}");
    receiver
        .wait_until("the redelivery", |r| r.len() == 2)
        .await;

    let replayed = operator(&app, &["webhooks", "replay", &id, "--from", "1"]).await;
    assert!(
        replayed.ok().contains("queued 1 deliveries"),
        "{replayed:?}"
    );
    receiver.wait_until("the replay", |r| r.len() == 3).await;
    let ids: Vec<String> = receiver.received().iter().map(|r| r.id.clone()).collect();
    assert!(ids.iter().all(|i| i == &ids[0]), "{ids:?}");

    let missing = operator(
        &app,
        &["webhooks", "deliveries", &uuid::Uuid::nil().to_string()],
    )
    .await;
    assert!(missing.fails(5).contains("not found"), "{missing:?}");
}

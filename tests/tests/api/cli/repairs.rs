//! `dead-letters` and `sagas`.

use super::operator;
use crate::helpers::spawn_app;

#[tokio::test]
async fn dead_letters_list_and_unknown_ones_are_exit_5() {
    let app = spawn_app().await;
    let list = operator(&app, &["dead-letters", "list", "--json"])
        .await
        .json();
    assert_eq!(list["items"], serde_json::json!([]), "{list}");
    let table = operator(&app, &["dead-letters", "list"]).await;
    assert!(table.ok().starts_with("ID"), "{table:?}");

    operator(&app, &["dead-letters", "show", "999999"])
        .await
        .fails(5);
    operator(&app, &["dead-letters", "retry", "999999"])
        .await
        .fails(5);
    let all = operator(&app, &["dead-letters", "retry-all"]).await;
    assert!(all.ok().contains("applied 0"), "{all:?}");
}

#[tokio::test]
async fn a_checkouts_saga_is_listed_shown_and_retried() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    let (_, buyer) = app.account("buyer").await;
    app.product(&seller, "SAGA-MUG", 100, 5).await;
    app.add_to_cart(&buyer, "SAGA-MUG", 1).await;
    let order = app.checkout(&buyer).await.to_string();
    app.wait_for_event("checkout_saga", &order, "SagaStarted")
        .await;

    let list = operator(&app, &["sagas", "list", "--json"]).await.json();
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["saga_id"] == order.as_str()),
        "{list}"
    );
    let table = operator(&app, &["sagas", "list"]).await;
    assert!(
        table.ok().lines().any(|l| l.starts_with(&order)),
        "{table:?}"
    );

    let shown = operator(&app, &["sagas", "show", &order, "--json"])
        .await
        .json();
    assert!(
        shown["events"].as_array().is_some_and(|e| !e.is_empty()),
        "{shown}"
    );
    let shown = operator(&app, &["sagas", "show", &order]).await;
    assert!(shown.ok().contains("steps:"), "{shown:?}");

    let retried = operator(&app, &["sagas", "retry", &order]).await;
    assert!(retried.ok().contains("is due at"), "{retried:?}");

    let unknown = "01900000-0000-7000-8000-000000000000";
    operator(&app, &["sagas", "show", unknown]).await.fails(5);
}

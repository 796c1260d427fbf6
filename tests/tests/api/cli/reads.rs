//! `projections`, `rebuilds` and `streams`.

use std::time::Duration;

use super::operator;
use crate::helpers::spawn_app;

#[tokio::test]
async fn projections_list_as_a_table_and_as_the_apis_json() {
    let app = spawn_app().await;
    let table = operator(&app, &["projections", "list"]).await;
    let lines: Vec<&str> = table.ok().lines().collect();
    for column in [
        "NAME",
        "STATE",
        "POSITION",
        "LAG",
        "PARTITIONS",
        "DEAD LETTERS",
        "REBUILD",
    ] {
        assert!(lines[0].contains(column), "{column}: {table:?}");
    }
    assert!(lines.iter().any(|l| l.starts_with("orders ")), "{table:?}");

    let json = operator(&app, &["projections", "list", "--json"])
        .await
        .json();
    let orders = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "orders")
        .expect("the orders projection");
    for field in [
        "position",
        "lag_seconds",
        "state",
        "dead_letters",
        "rebuildable",
        "rebuild",
        "partitions",
    ] {
        assert!(orders.get(field).is_some(), "{field}: {orders}");
    }
}

#[tokio::test]
async fn a_rebuild_starts_shows_and_cancels_and_an_ended_one_is_a_conflict() {
    let app = spawn_app().await;
    let started = operator(&app, &["projections", "rebuild", "catalog", "--json"])
        .await
        .json();
    assert_eq!(started["projection"], "catalog");
    let id = started["rebuild_id"].as_str().unwrap().to_owned();

    let shown = operator(&app, &["rebuilds", "show", &id]).await;
    assert!(
        shown.ok().contains(&id) && shown.stdout.contains("catalog"),
        "{shown:?}"
    );
    let listed = operator(&app, &["rebuilds", "list"]).await;
    assert!(
        listed.ok().lines().nth(1).unwrap().starts_with(&id),
        "{listed:?}"
    );

    // A pending rebuild is cancelled at once; one running stops at its next batch; one that
    // ended is a conflict. Whichever the runner has reached, asking again ends in 409.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let cancel = operator(&app, &["rebuilds", "cancel", &id]).await;
        if cancel.code == 6 {
            assert!(
                cancel.fails(6).starts_with("commerce: conflict:"),
                "{cancel:?}"
            );
            break;
        }
        assert_eq!(cancel.code, 0, "{cancel:?}");
        assert!(tokio::time::Instant::now() < deadline, "{cancel:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ended = operator(&app, &["rebuilds", "show", &id, "--json"])
        .await
        .json();
    assert!(
        ["cancelled", "completed"].contains(&ended["state"].as_str().unwrap()),
        "{ended}"
    );
}

#[tokio::test]
async fn a_rebuild_with_wait_ends_when_the_rebuild_completes() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "WAIT-1", 500, 0).await;
    let run = operator(
        &app,
        &["projections", "rebuild", "catalog", "--wait", "--json"],
    )
    .await;
    let ended = run.json();
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(ended["state"], "completed", "{ended}");
    assert_eq!(ended["events_done"], ended["events_total"], "{ended}");
}

#[tokio::test]
async fn unknown_rebuilds_and_projections_are_exit_5() {
    let app = spawn_app().await;
    let run = operator(
        &app,
        &["rebuilds", "show", "01900000-0000-7000-8000-000000000000"],
    )
    .await;
    run.fails(5);
    let run = operator(&app, &["projections", "rebuild", "no_such_projection"]).await;
    run.fails(5);
}

#[tokio::test]
async fn a_stream_shows_its_events_and_its_state_as_of_a_position() {
    let app = spawn_app().await;
    let (_, seller) = app.account("seller").await;
    app.product(&seller, "CLI-MUG", 100, 3).await;

    let table = operator(&app, &["streams", "show", "inventory", "CLI-MUG"]).await;
    let text = table.ok();
    assert!(text.starts_with("inventory CLI-MUG"), "{table:?}");
    assert!(
        text.contains("SEQ") && text.contains("Restocked"),
        "{table:?}"
    );

    let stream = operator(&app, &["streams", "show", "inventory", "CLI-MUG", "--json"])
        .await
        .json();
    assert_eq!(stream["aggregate_type"], "inventory");
    let first = &stream["items"][0];
    assert_eq!(first["sequence"], 1);
    assert!(first["payload"].is_object(), "{stream}");
    let position = first["position"].as_i64().unwrap().to_string();

    let folded = operator(
        &app,
        &[
            "streams",
            "show",
            "inventory",
            "CLI-MUG",
            "--as-of",
            &position,
            "--json",
        ],
    )
    .await
    .json();
    assert_eq!(folded["version"], 1, "{folded}");
    assert!(folded["state"].is_object(), "{folded}");
    let shown = operator(
        &app,
        &[
            "streams",
            "show",
            "inventory",
            "CLI-MUG",
            "--as-of",
            &position,
        ],
    )
    .await;
    assert!(
        shown.ok().contains("version") && shown.stdout.contains('{'),
        "{shown:?}"
    );

    let missing = operator(&app, &["streams", "show", "inventory", "NO-SUCH-SKU"]).await;
    missing.fails(5);
    let before = operator(
        &app,
        &[
            "streams",
            "show",
            "inventory",
            "CLI-MUG",
            "--as-of",
            "2000-01-01T00:00:00Z",
        ],
    )
    .await;
    before.fails(5);
}

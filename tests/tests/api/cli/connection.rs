//! Where the engine is and who asks: the failures before any admin route answers.

use super::{commerce, nowhere};
use crate::helpers::{spawn_app, ADMIN_EMAIL};

#[tokio::test]
async fn an_unreachable_engine_is_exit_3_and_named() {
    let url = nowhere();
    let run = commerce(
        &["projections", "list", "--url", &url, "--token", "t"],
        &[],
        "",
    )
    .await;
    let message = run.fails(3);
    assert!(message.contains(&url), "{message}");
}

#[tokio::test]
async fn refused_credentials_are_exit_4_and_never_printed() {
    let app = spawn_app().await;
    let secret = "not-the-password-at-all";
    let run = commerce(
        &[
            "projections",
            "list",
            "--email",
            ADMIN_EMAIL,
            "--password",
            secret,
        ],
        &[("COMMERCE_URL", &app.address)],
        "",
    )
    .await;
    let message = run.fails(4);
    assert!(message.contains(ADMIN_EMAIL), "{message}");
    assert!(!run.stderr.contains(secret) && !run.stdout.contains(secret));
}

#[tokio::test]
async fn no_credentials_is_a_usage_error() {
    let app = spawn_app().await;
    let run = commerce(&["sagas", "list"], &[("COMMERCE_URL", &app.address)], "").await;
    assert!(run.fails(2).contains("--token"));
}

#[tokio::test]
async fn a_bad_as_of_is_refused_before_any_request() {
    let run = commerce(
        &[
            "streams",
            "show",
            "order",
            "x",
            "--as-of",
            "yesterday",
            "--url",
            &nowhere(),
            "--token",
            "t",
        ],
        &[],
        "",
    )
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("RFC 3339"), "{run:?}");
}

#[tokio::test]
async fn a_buyers_token_is_exit_4() {
    let app = spawn_app().await;
    let (_, buyer) = app.account("buyer").await;
    let run = commerce(
        &["sagas", "list"],
        &[("COMMERCE_URL", &app.address), ("COMMERCE_TOKEN", &buyer)],
        "",
    )
    .await;
    assert!(run.fails(4).contains("403"), "{run:?}");
    assert!(!run.stderr.contains(&buyer));
}

#[tokio::test]
async fn a_forged_token_is_exit_4() {
    let app = spawn_app().await;
    let run = commerce(
        &["projections", "list", "--token", "not.a.token"],
        &[("COMMERCE_URL", &app.address)],
        "",
    )
    .await;
    assert!(run.fails(4).contains("401"), "{run:?}");
}

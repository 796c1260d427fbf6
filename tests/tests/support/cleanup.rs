//! Cleaning up after a test's engine, from `Drop`.

use sqlx::{Connection, Executor};

/// Deletes the JetStream stream `(nats_url, stream)` if given, then drops `database`, from a
/// thread and runtime of its own (Drop cannot await), and waits for both. Failures are ignored:
/// there is nothing left to report them to.
pub fn drop_database(database: &str, stream: Option<(String, String)>) {
    let database = database.to_owned();
    let admin_url =
        commerce_store::db::with_database(&commerce_store::db::database_url_from_env(), "postgres");
    let _ = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async move {
            if let Some((nats_url, stream)) = stream {
                if let Ok(client) = async_nats::connect(&nats_url).await {
                    let _ = async_nats::jetstream::new(client)
                        .delete_stream(&stream)
                        .await;
                }
            }
            if let Ok(mut connection) = sqlx::PgConnection::connect(&admin_url).await {
                let drop = format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)");
                let _ = connection.execute(drop.as_str()).await;
                let _ = connection.close().await;
            }
        });
    })
    .join();
}

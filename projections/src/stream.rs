//! The JetStream stream every event is published to.

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, stream};
use chrono::{DateTime, Utc};

use crate::Namespace;

/// How long JetStream remembers a `Nats-Msg-Id`: a relay that crashed after publishing and
/// before checkpointing republishes within this window without creating duplicates. Later
/// duplicates are still harmless: projections skip sequences they already applied.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// The stream's configuration: `<NAMESPACE>_EVENTS` on `<namespace>.events.>`, on file, kept
/// without limits (JetStream is derived data; the event store stays the truth).
pub fn config(namespace: &Namespace) -> stream::Config {
    stream::Config {
        name: namespace.stream_name(),
        description: Some(format!(
            "Every event of the `{namespace}` event store, in commit order"
        )),
        subjects: vec![namespace.all_events()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    }
}

/// Creates the stream, or brings an existing one to [`config`]. The relay and every projection
/// worker call it at start, so neither has to start first.
pub async fn ensure(
    jetstream: &jetstream::Context,
    namespace: &Namespace,
) -> anyhow::Result<stream::Info> {
    jetstream
        .create_or_update_stream(config(namespace))
        .await
        .with_context(|| {
            format!(
                "creating or updating the stream {}",
                namespace.stream_name()
            )
        })
}

/// The identity of a stream: its creation time, to the microsecond (what a `timestamptz`
/// keeps). A stream deleted and created again under the same name gets a new one, so stream
/// sequences are only comparable between two looks that saw the same identity.
pub fn identity(info: &stream::Info) -> anyhow::Result<DateTime<Utc>> {
    let micros = i64::try_from(info.created.unix_timestamp_nanos() / 1000)
        .context("the stream's creation time is out of range")?;
    DateTime::from_timestamp_micros(micros).context("the stream's creation time is out of range")
}

/// The identity and state of the namespace's stream, as the server sees it now.
pub async fn look_up(
    jetstream: &jetstream::Context,
    namespace: &Namespace,
) -> anyhow::Result<(DateTime<Utc>, stream::State)> {
    let mut stream = jetstream
        .get_stream(namespace.stream_name())
        .await
        .context("looking up the stream")?;
    let info = stream.info().await.context("reading the stream's state")?;
    Ok((identity(info)?, info.state.clone()))
}

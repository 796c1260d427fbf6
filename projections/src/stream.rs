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

/// How long the stream keeps a message by default: the event store is the truth, the stream
/// only needs a window wide enough for a projection or a relay to be down and catch up.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// The most replicas JetStream keeps of a stream (`COMMERCE_STREAM_REPLICAS` is 1 to this).
pub const MAX_REPLICAS: usize = 5;

/// The stream's configuration: `<NAMESPACE>_EVENTS` on `<namespace>.events.>`, on file,
/// keeping each message `max_age` (`Duration::ZERO`: for ever), on `replicas` servers of a
/// NATS cluster (1 on a single server). JetStream is derived data; the event store stays the
/// truth, and a message dropped by age only leaves the front of the stream: its last sequence
/// stays, so the relay does not take it for a shortened stream. The durable consumers follow
/// the stream's replicas (see the projection worker's consumer).
pub fn config(namespace: &Namespace, max_age: Duration, replicas: usize) -> stream::Config {
    // JetStream refuses a duplicate window longer than the messages are kept.
    let duplicate_window = if max_age.is_zero() {
        DUPLICATE_WINDOW
    } else {
        DUPLICATE_WINDOW.min(max_age)
    };
    stream::Config {
        name: namespace.stream_name(),
        description: Some(format!(
            "Every event of the `{namespace}` event store, in commit order"
        )),
        subjects: vec![namespace.all_events()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        max_age,
        duplicate_window,
        num_replicas: replicas,
        ..Default::default()
    }
}

/// Makes sure the stream exists: created with [`DEFAULT_MAX_AGE`] and `replicas`
/// (`COMMERCE_STREAM_REPLICAS`) when missing, left as it is otherwise (its retention and
/// replicas are the relay's to set, see [`apply`]). Projection workers and republishes call it
/// at start, so that nobody has to start first; they pass the same replicas as the relay, so
/// that a stream they create is as safe as the relay's from its first message.
pub async fn ensure(
    jetstream: &jetstream::Context,
    namespace: &Namespace,
    replicas: usize,
) -> anyhow::Result<stream::Info> {
    let stream = jetstream
        .get_or_create_stream(config(namespace, DEFAULT_MAX_AGE, replicas))
        .await
        .with_context(|| format!("creating the stream {}", namespace.stream_name()))?;
    stream
        .get_info()
        .await
        .context("reading the stream's state")
}

/// Creates the stream with the retention `max_age` and `replicas`, or brings an existing one to
/// [`config`] (`COMMERCE_STREAM_MAX_AGE`, `COMMERCE_STREAM_REPLICAS`): the relay calls it at
/// start, and again whenever it finds the stream's retention or replicas changed (another
/// engine's relay, or a stream recreated). JetStream moves an existing stream to more or fewer
/// replicas in place, and its durable consumers with it.
pub async fn apply(
    jetstream: &jetstream::Context,
    namespace: &Namespace,
    max_age: Duration,
    replicas: usize,
) -> anyhow::Result<stream::Info> {
    jetstream
        .create_or_update_stream(config(namespace, max_age, replicas))
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

/// The identity, state and retention of the namespace's stream, as the server sees it now.
pub async fn look_up(
    jetstream: &jetstream::Context,
    namespace: &Namespace,
) -> anyhow::Result<(DateTime<Utc>, stream::State)> {
    look_up_info(jetstream, namespace)
        .await
        .and_then(|info| Ok((identity(&info)?, info.state)))
}

/// The namespace's stream's whole description, as the server sees it now.
pub async fn look_up_info(
    jetstream: &jetstream::Context,
    namespace: &Namespace,
) -> anyhow::Result<stream::Info> {
    let stream = jetstream
        .get_stream(namespace.stream_name())
        .await
        .context("looking up the stream")?;
    stream
        .get_info()
        .await
        .context("reading the stream's state")
}

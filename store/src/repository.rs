//! Loading and changing aggregates.
//!
//! Commands for one aggregate queue behind a per-id lock in this process, and the state they
//! leave stays in a bounded in-memory cache, so an aggregate is not reloaded per command. Plain
//! commands (no claims, idempotency key or expected version) that queue up behind an append are
//! decided together, in arrival order, and appended in one statement when the lock comes free:
//! a hot aggregate costs one round trip per group, not per command. The append's sequence check
//! stays the arbiter across processes: a conflict evicts the cached state and the commands are
//! decided again on fresh state, a bounded number of times.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use lru::LruCache;
use sqlx::PgPool;
use tokio::sync::{oneshot, OwnedMutexGuard};

use crate::unit_of_work::{Append, Snapshot};
use crate::{
    Claim, CommandError, CommitError, IdempotencyRecord, Metadata, StoredResponse, UnitOfWork,
};

/// How often a command is decided again after losing a race to another process.
const MAX_ATTEMPTS: usize = 8;
/// Aggregates of one type kept in memory.
const CACHE_CAPACITY: usize = 10_000;
/// A snapshot is written once this many events were appended since the last one.
pub const SNAPSHOT_EVERY: i64 = 100;

/// An aggregate's state at a version.
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    pub state: A,
    /// The sequence of its last event; 0 for an aggregate without events.
    pub version: i64,
    snapshot_version: i64,
}

/// What a command did.
#[derive(Debug, Clone)]
pub struct Outcome<A: Aggregate> {
    pub state: A,
    pub version: i64,
    /// The global position of its last event, if it appended any.
    pub position: Option<i64>,
    pub events: Vec<A::Event>,
}

/// Builds the response to remember for an idempotent command from the aggregate's new state.
pub type Respond<A> = std::sync::Arc<dyn Fn(&A) -> StoredResponse + Send + Sync>;

/// An idempotency key sent with a command.
pub struct IdempotencyKey<A> {
    pub scope: String,
    pub key: String,
    pub request_hash: Vec<u8>,
    pub respond: Respond<A>,
}

/// How to run one command.
pub struct CommandOptions<A> {
    pub metadata: Metadata,
    /// `If-Match`: the version the client saw.
    pub expected_version: Option<i64>,
    /// Unique values the command takes, written with its events.
    pub claims: Vec<Claim>,
    pub idempotency: Option<IdempotencyKey<A>>,
}

impl<A> CommandOptions<A> {
    pub fn new(metadata: Metadata) -> Self {
        Self {
            metadata,
            expected_version: None,
            claims: Vec::new(),
            idempotency: None,
        }
    }
}

type Slot<A> = Arc<tokio::sync::Mutex<Option<Loaded<A>>>>;

/// Loads, caches and changes the aggregates of one type.
pub struct Repository<A: Aggregate> {
    shared: Arc<Shared<A>>,
}

struct Shared<A: Aggregate> {
    pool: PgPool,
    slots: Mutex<LruCache<String, Slot<A>>>,
    /// Plain commands waiting for their aggregate's lock, per id.
    queues: Mutex<HashMap<String, Vec<Queued<A>>>>,
}

/// A plain command waiting to be decided with the others queued for its aggregate.
struct Queued<A: Aggregate> {
    command: A::Command,
    metadata: serde_json::Value,
    reply: oneshot::Sender<CommandResult<A>>,
}

type CommandResult<A> = Result<Outcome<A>, CommandError<<A as Aggregate>::Error>>;

impl<A: Aggregate> Clone for Repository<A> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

/// One aggregate, held exclusively in this process until dropped.
pub struct Locked<'r, A: Aggregate> {
    repository: &'r Repository<A>,
    id: String,
    slot: OwnedMutexGuard<Option<Loaded<A>>>,
    from_cache: bool,
}

impl<A> Repository<A>
where
    A: Aggregate<Services = ()> + Clone + 'static,
{
    pub fn new(pool: PgPool) -> Self {
        let capacity = NonZeroUsize::new(CACHE_CAPACITY).unwrap_or(NonZeroUsize::MIN);
        Self {
            shared: Arc::new(Shared {
                pool,
                slots: Mutex::new(LruCache::new(capacity)),
                queues: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.shared.pool
    }

    /// Takes the aggregate's in-process lock.
    pub async fn lock(&self, id: &str) -> Locked<'_, A> {
        let slot = {
            let mut slots = self
                .shared
                .slots
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            slots.get_or_insert_ref(id, Default::default).clone()
        };
        let slot = slot.lock_owned().await;
        let from_cache = slot.is_some();
        Locked {
            repository: self,
            id: id.to_owned(),
            slot,
            from_cache,
        }
    }

    /// The aggregate's current state (from the cache when it holds it).
    pub async fn load(&self, id: &str) -> anyhow::Result<Loaded<A>> {
        let mut locked = self.lock(id).await;
        Ok(locked.load().await?.clone())
    }

    /// The aggregate's current state, checked against the store first: for deciding on state
    /// another process may have changed (a saga reading the order it drives).
    pub async fn load_latest(&self, id: &str) -> anyhow::Result<Loaded<A>> {
        let mut locked = self.lock(id).await;
        if locked.is_stale().await? {
            locked.evict();
        }
        Ok(locked.load().await?.clone())
    }

    /// Decides `command` on the aggregate and commits its events, retrying on conflicts.
    #[tracing::instrument(skip_all, fields(aggregate = A::TYPE, id = %id), err(level = "debug"))]
    pub async fn execute(
        &self,
        id: &str,
        command: A::Command,
        options: CommandOptions<A>,
    ) -> Result<Outcome<A>, CommandError<A::Error>>
    where
        A::Command: Clone + Send + Sync + 'static,
        A::Error: Send + 'static,
    {
        let plain = options.claims.is_empty()
            && options.idempotency.is_none()
            && options.expected_version.is_none();
        let result = if plain {
            self.execute_grouped(id, command, &options.metadata).await
        } else {
            self.execute_with_retries(id, command, options).await
        };
        let outcome = match &result {
            Ok(_) => "accepted",
            Err(
                CommandError::Rejected(_)
                | CommandError::VersionMismatch { .. }
                | CommandError::ClaimTaken(_),
            ) => "rejected",
            Err(CommandError::Conflict) => "conflict",
            Err(CommandError::DuplicateRequest) => "duplicate",
            Err(CommandError::Infrastructure(_)) => "error",
        };
        metrics::counter!("commerce_commands_total", "aggregate" => A::TYPE, "outcome" => outcome)
            .increment(1);
        result
    }

    /// Queues a plain command for its aggregate and has it decided with whatever else queued
    /// meanwhile. The group is committed by a task of its own: a caller that goes away (a client
    /// hanging up) cannot leave the others of its group without an answer.
    async fn execute_grouped(
        &self,
        id: &str,
        command: A::Command,
        metadata: &Metadata,
    ) -> CommandResult<A>
    where
        A::Command: Clone + Send + Sync + 'static,
        A::Error: Send + 'static,
    {
        let metadata = serde_json::to_value(metadata).context("serialising metadata")?;
        let (reply, answer) = oneshot::channel();
        self.shared
            .queues
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(id.to_owned())
            .or_default()
            .push(Queued {
                command,
                metadata,
                reply,
            });
        let repository = self.clone();
        let id = id.to_owned();
        tokio::spawn(async move { repository.serve_queue(&id).await });
        answer.await.unwrap_or_else(|_| {
            Err(CommandError::Infrastructure(anyhow::anyhow!(
                "the task committing this command stopped"
            )))
        })
    }

    /// Takes the aggregate's lock, then decides and commits every command queued for it (none,
    /// when an earlier task took them all).
    async fn serve_queue(&self, id: &str)
    where
        A::Command: Clone,
    {
        let mut locked = self.lock(id).await;
        let group = self
            .shared
            .queues
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(id)
            .unwrap_or_default();
        if group.is_empty() {
            return;
        }
        let (commands, replies): (Vec<_>, Vec<_>) = group
            .into_iter()
            .map(|queued| ((queued.command, queued.metadata), queued.reply))
            .unzip();
        let results = match self.commit_group(&mut locked, &commands).await {
            Ok(results) => results,
            // One command the database refuses (a payload it cannot store) must not fail the
            // others: try each alone.
            Err(_) if commands.len() > 1 => {
                let mut results = Vec::with_capacity(commands.len());
                for command in &commands {
                    let alone = self.commit_group(&mut locked, std::slice::from_ref(command));
                    results.push(match alone.await {
                        Ok(mut result) => result.remove(0),
                        Err(error) => Err(error.into()),
                    });
                }
                results
            }
            Err(error) => vec![Err(error.into())],
        };
        for (reply, result) in replies.into_iter().zip(results) {
            // A caller that went away no longer wants its answer.
            let _ = reply.send(result);
        }
    }

    /// Decides `commands` in order, each on the state the previous left, and appends all their
    /// events in one statement (one append per command, with its own metadata). An error fails
    /// the whole group; a refusal only its command.
    async fn commit_group(
        &self,
        locked: &mut Locked<'_, A>,
        commands: &[(A::Command, serde_json::Value)],
    ) -> Result<Vec<CommandResult<A>>, CommitError>
    where
        A::Command: Clone,
    {
        'attempt: for _ in 0..MAX_ATTEMPTS {
            let loaded = locked.load().await?.clone();
            let mut state = loaded.state.clone();
            let mut version = loaded.version;
            let mut decided = Vec::with_capacity(commands.len());
            let mut unit = UnitOfWork::default();
            for (command, metadata) in commands {
                match decide(&state, command.clone()).await {
                    Ok((next, events)) => {
                        if !events.is_empty() {
                            unit.appends.push(Append {
                                aggregate_type: A::TYPE,
                                aggregate_id: locked.id.clone(),
                                expected_version: version,
                                events: serialize_events(&events)?,
                                metadata: metadata.clone(),
                            });
                        }
                        version += events.len() as i64;
                        decided.push(Ok((next.clone(), version, events)));
                        state = next;
                    }
                    Err(refusal) => decided.push(Err(refusal)),
                }
            }
            // An append's sequence check catches decisions on old news; without one, a refusal
            // or a no-op might rest on another process's old news: check before answering.
            if unit.appends.is_empty() && locked.is_stale().await? {
                locked.evict();
                continue 'attempt;
            }
            let snapshot_due = version - loaded.snapshot_version >= SNAPSHOT_EVERY;
            if snapshot_due {
                unit.snapshots.push(Snapshot {
                    aggregate_type: A::TYPE,
                    aggregate_id: locked.id.clone(),
                    version,
                    state: serde_json::to_value(&state).context("serialising a snapshot")?,
                });
            }
            let positions = if unit.appends.is_empty() {
                Vec::new()
            } else {
                match unit.commit(&self.shared.pool).await {
                    Ok(committed) => committed.positions,
                    Err(CommitError::Conflict) => {
                        locked.evict();
                        continue 'attempt;
                    }
                    Err(other) => return Err(other),
                }
            };
            if version != loaded.version {
                locked.committed(state, version, snapshot_due);
            }
            let mut positions = positions.into_iter();
            return Ok(decided
                .into_iter()
                .map(|decision| {
                    let (state, version, events) = decision.map_err(CommandError::Rejected)?;
                    let position = if events.is_empty() {
                        None
                    } else {
                        positions.next().flatten()
                    };
                    Ok(Outcome {
                        state,
                        version,
                        position,
                        events,
                    })
                })
                .collect());
        }
        Ok((0..commands.len())
            .map(|_| Err(CommandError::Conflict))
            .collect())
    }

    async fn execute_with_retries(
        &self,
        id: &str,
        command: A::Command,
        options: CommandOptions<A>,
    ) -> Result<Outcome<A>, CommandError<A::Error>>
    where
        A::Command: Clone,
    {
        let metadata = serde_json::to_value(&options.metadata).context("serialising metadata")?;
        for _ in 0..MAX_ATTEMPTS {
            let mut locked = self.lock(id).await;
            let loaded = locked.load().await?.clone();
            if let Some(expected) = options.expected_version {
                if expected != loaded.version {
                    if locked.is_stale().await? {
                        locked.evict();
                        continue;
                    }
                    return Err(CommandError::VersionMismatch {
                        current: loaded.version,
                    });
                }
            }
            let decided = locked.decide(&loaded, command.clone()).await;
            let (state, events) = match decided {
                Ok(decided) => decided,
                Err(rejection) => {
                    // A refusal decided on another process's old news is decided again.
                    if locked.is_stale().await? {
                        locked.evict();
                        continue;
                    }
                    return Err(CommandError::Rejected(rejection));
                }
            };
            if events.is_empty() && options.idempotency.is_none() {
                if locked.is_stale().await? {
                    locked.evict();
                    continue;
                }
                return Ok(Outcome {
                    state,
                    version: loaded.version,
                    position: None,
                    events,
                });
            }
            let version = loaded.version + events.len() as i64;
            let mut unit = UnitOfWork {
                claims: options.claims.clone(),
                ..Default::default()
            };
            let snapshot_due = locked.stage(&mut unit, &loaded, &state, &events, &metadata)?;
            if let Some(key) = &options.idempotency {
                let mut response = (key.respond)(&state);
                response.etag.get_or_insert(version);
                unit.idempotency = Some(IdempotencyRecord {
                    scope: key.scope.clone(),
                    key: key.key.clone(),
                    request_hash: key.request_hash.clone(),
                    response,
                });
            }
            match unit.commit(&self.shared.pool).await {
                Ok(committed) => {
                    let position = committed.last_position();
                    locked.committed(state.clone(), version, snapshot_due);
                    return Ok(Outcome {
                        state,
                        version,
                        position,
                        events,
                    });
                }
                Err(CommitError::Conflict) => locked.evict(),
                Err(other) => return Err(other.into()),
            }
        }
        Err(CommandError::Conflict)
    }
}

impl<A> Locked<'_, A>
where
    A: Aggregate<Services = ()> + Clone + 'static,
{
    /// The state: the cached one, or the latest snapshot plus the events after it.
    pub async fn load(&mut self) -> anyhow::Result<&Loaded<A>> {
        if self.slot.is_none() {
            let loaded = load_from_store::<A>(&self.repository.shared.pool, &self.id).await?;
            *self.slot = Some(loaded);
        }
        self.slot.as_ref().context("the aggregate was just loaded")
    }

    /// The state of an aggregate this process just minted the id of (a new order): nothing to
    /// read. Should the id exist after all, the append's sequence check refuses the write.
    pub fn start_new(&mut self) -> Loaded<A> {
        let fresh = Loaded {
            state: A::default(),
            version: 0,
            snapshot_version: 0,
        };
        *self.slot = Some(fresh.clone());
        fresh
    }

    /// Runs the command on a copy of `loaded`: the new state and the events, or the refusal.
    pub async fn decide(
        &self,
        loaded: &Loaded<A>,
        command: A::Command,
    ) -> Result<(A, Vec<A::Event>), A::Error> {
        decide(&loaded.state, command).await
    }

    /// Adds the events (and a snapshot when one is due) to `unit`; returns whether a snapshot was staged.
    pub fn stage(
        &self,
        unit: &mut UnitOfWork,
        loaded: &Loaded<A>,
        state: &A,
        events: &[A::Event],
        metadata: &serde_json::Value,
    ) -> anyhow::Result<bool> {
        let serialized = serialize_events(events)?;
        unit.appends.push(Append {
            aggregate_type: A::TYPE,
            aggregate_id: self.id.clone(),
            expected_version: loaded.version,
            events: serialized,
            metadata: metadata.clone(),
        });
        let version = loaded.version + events.len() as i64;
        let due = version - loaded.snapshot_version >= SNAPSHOT_EVERY;
        if due {
            unit.snapshots.push(Snapshot {
                aggregate_type: A::TYPE,
                aggregate_id: self.id.clone(),
                version,
                state: serde_json::to_value(state).context("serialising a snapshot")?,
            });
        }
        Ok(due)
    }

    /// Remembers the state a committed unit of work left.
    pub fn committed(&mut self, state: A, version: i64, snapshot_written: bool) {
        let snapshot_version = match (&*self.slot, snapshot_written) {
            (_, true) => version,
            (Some(previous), false) => previous.snapshot_version,
            (None, false) => 0,
        };
        *self.slot = Some(Loaded {
            state,
            version,
            snapshot_version,
        });
    }

    /// Forgets the cached state; the next load reads the store.
    pub fn evict(&mut self) {
        *self.slot = None;
        self.from_cache = false;
    }

    /// Whether another process appended since the cached state was loaded.
    pub async fn is_stale(&self) -> anyhow::Result<bool> {
        let Some(loaded) = self.slot.as_ref().filter(|_| self.from_cache) else {
            return Ok(false);
        };
        let latest: i64 = sqlx::query_scalar(
            "SELECT COALESCE(max(sequence), 0) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2",
        )
        .bind(A::TYPE)
        .bind(&self.id)
        .fetch_one(&self.repository.shared.pool)
        .await
        .context("checking the stream's version")?;
        Ok(latest != loaded.version)
    }
}

/// Runs `command` on a copy of `state`: the new state and the events, or the refusal.
async fn decide<A: Aggregate<Services = ()> + Clone>(
    state: &A,
    command: A::Command,
) -> Result<(A, Vec<A::Event>), A::Error> {
    let mut state = state.clone();
    let sink = EventSink::default();
    state.handle(command, &(), &sink).await?;
    Ok((state, sink.collect().await))
}

/// `(event_type, event_version, payload)` of each event, as an [`Append`] takes them.
fn serialize_events<E: DomainEvent>(
    events: &[E],
) -> anyhow::Result<Vec<(String, String, serde_json::Value)>> {
    events
        .iter()
        .map(|e| Ok((e.event_type(), e.event_version(), serde_json::to_value(e)?)))
        .collect::<Result<Vec<_>, serde_json::Error>>()
        .context("serialising events")
}

/// Folds the latest snapshot and the events after it, read in one round trip. A snapshot that
/// no longer deserialises (the state's shape changed) is ignored and the whole stream replayed.
pub async fn load_from_store<A>(pool: &PgPool, id: &str) -> anyhow::Result<Loaded<A>>
where
    A: Aggregate + Clone,
{
    // The snapshot (if any) comes first, flagged; then the events after it.
    let rows: Vec<(bool, i64, serde_json::Value)> = sqlx::query_as(
        "WITH snapshot AS ( \
             SELECT last_sequence, payload FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2) \
         SELECT true, last_sequence, payload FROM snapshot \
         UNION ALL \
         (SELECT false, sequence, payload FROM events \
          WHERE aggregate_type = $1 AND aggregate_id = $2 \
            AND sequence > COALESCE((SELECT last_sequence FROM snapshot), 0)) \
         ORDER BY 1 DESC, 2",
    )
    .bind(A::TYPE)
    .bind(id)
    .fetch_all(pool)
    .await
    .context("reading the snapshot and the events")?;
    let mut rows = rows.into_iter().peekable();
    let (mut state, mut version) = match rows.next_if(|(is_snapshot, _, _)| *is_snapshot) {
        Some((_, version, payload)) => match serde_json::from_value::<A>(payload) {
            Ok(state) => (state, version),
            Err(error) => {
                tracing::warn!(aggregate = A::TYPE, %id, %error, "ignoring a snapshot that no longer deserialises");
                let (state, version) = replay_from_events::<A>(pool, id).await?;
                return Ok(Loaded {
                    state,
                    version,
                    snapshot_version: 0,
                });
            }
        },
        None => (A::default(), 0),
    };
    let snapshot_version = version;
    for (_, sequence, payload) in rows {
        let event: A::Event = serde_json::from_value(payload)
            .with_context(|| format!("decoding {} {id} event {sequence}", A::TYPE))?;
        state.apply(event);
        version = sequence;
    }
    Ok(Loaded {
        state,
        version,
        snapshot_version,
    })
}

/// Folds every event of the stream from the start, ignoring snapshots.
pub async fn replay_from_events<A>(pool: &PgPool, id: &str) -> anyhow::Result<(A, i64)>
where
    A: Aggregate,
{
    let events: Vec<(i64, serde_json::Value)> =
        sqlx::query_as("SELECT sequence, payload FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence")
            .bind(A::TYPE)
            .bind(id)
            .fetch_all(pool)
            .await
            .context("reading the events")?;
    let mut state = A::default();
    let mut version = 0;
    for (sequence, payload) in events {
        state.apply(serde_json::from_value(payload).context("decoding an event")?);
        version = sequence;
    }
    Ok((state, version))
}

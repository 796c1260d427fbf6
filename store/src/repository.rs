//! Loading and changing aggregates: the one place that commits commands.
//!
//! Commands for one aggregate queue behind a per-id lock in this process, and the state they
//! leave stays in a bounded in-memory cache, so an aggregate is not reloaded per command. Plain
//! commands (no claims, idempotency key, expected version or companion) that queue up
//! behind an append are decided together, in arrival order, and appended in one statement when
//! the lock comes free: a hot aggregate costs one round trip per group, not per command. Every
//! other command is a group of one, through the same loop ([`Repository::commit_group`]):
//! lock → load → decide → stage → commit, and on a conflict evict and decide again on fresh
//! state, a bounded number of times. A command may carry a [`Companion`] (a change to a second
//! aggregate decided on its outcome, committed in the same transaction). Changes to several
//! aggregates with a fencing check (a saga's steps) go through [`crate::Batch`].

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use chrono::{DateTime, Utc};
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
/// The largest event payload the store takes: well under the bus's 1 MiB message limit once
/// metadata and headers are added, so every event committed can be published.
pub const MAX_EVENT_BYTES: usize = 512 * 1024;

/// An aggregate's state at a version.
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    pub state: A,
    /// The sequence of its last event; 0 for an aggregate without events.
    pub version: i64,
    /// The global position of its last event.
    pub position: Option<i64>,
    snapshot_version: i64,
}

/// What a command did.
#[derive(Debug, Clone)]
pub struct Outcome<A: Aggregate> {
    pub state: A,
    pub version: i64,
    /// The global position of its last event, or of the aggregate's last event when it appended
    /// none: what a reader waits for to see the state this answer describes.
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

    fn is_plain(&self) -> bool {
        self.claims.is_empty() && self.idempotency.is_none() && self.expected_version.is_none()
    }
}

/// A change to a second aggregate committed in the same transaction as a command, decided on
/// what the command decided: the saga's record of the step it took, the order a checkout opens.
/// Its aggregate is locked after the command's (always in that order, so two never deadlock).
pub struct Companion<'r, A: Aggregate, B: Aggregate> {
    repository: &'r Repository<B>,
    id: String,
    /// The id was just minted: nothing to read (the append's sequence check guards it).
    new: bool,
    metadata: Metadata,
    /// The companion's command, given the command's new state and events; `None` for nothing.
    command: CompanionCommand<'r, A, B>,
}

type CompanionCommand<'r, A, B> = Box<
    dyn Fn(&A, &[<A as Aggregate>::Event]) -> Option<<B as Aggregate>::Command> + Send + Sync + 'r,
>;

impl<'r, A: Aggregate, B: Aggregate> Companion<'r, A, B> {
    pub fn new(
        repository: &'r Repository<B>,
        id: impl Into<String>,
        metadata: Metadata,
        command: impl Fn(&A, &[A::Event]) -> Option<B::Command> + Send + Sync + 'r,
    ) -> Self {
        Self {
            repository,
            id: id.into(),
            new: false,
            metadata,
            command: Box::new(command),
        }
    }

    /// For an aggregate whose id the caller just minted.
    pub fn new_aggregate(mut self) -> Self {
        self.new = true;
        self
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

/// One command and everything committed with it.
struct Request<A: Aggregate> {
    command: A::Command,
    metadata: serde_json::Value,
    options: CommandOptions<A>,
}

/// A plain command waiting to be decided with the others queued for its aggregate.
struct Queued<A: Aggregate> {
    request: Request<A>,
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
pub struct Locked<A: Aggregate> {
    repository: Repository<A>,
    id: String,
    slot: OwnedMutexGuard<Option<Loaded<A>>>,
    from_cache: bool,
}

/// A command decided in an attempt: its new state, version and events, or why not.
type Decision<A> =
    Result<(A, i64, Vec<<A as Aggregate>::Event>), CommandError<<A as Aggregate>::Error>>;

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
    pub async fn lock(&self, id: &str) -> Locked<A> {
        let slot = self.slot(id).lock_owned().await;
        self.locked(id, slot)
    }

    /// Takes the aggregate's in-process lock if nothing holds it now.
    pub fn try_lock(&self, id: &str) -> Option<Locked<A>> {
        let slot = self.slot(id).try_lock_owned().ok()?;
        Some(self.locked(id, slot))
    }

    fn slot(&self, id: &str) -> Slot<A> {
        let mut slots = self
            .shared
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        slots.get_or_insert_ref(id, Default::default).clone()
    }

    fn locked(&self, id: &str, slot: OwnedMutexGuard<Option<Loaded<A>>>) -> Locked<A> {
        let from_cache = slot.is_some();
        Locked {
            repository: self.clone(),
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
    pub async fn execute(
        &self,
        id: &str,
        command: A::Command,
        options: CommandOptions<A>,
    ) -> CommandResult<A>
    where
        A::Command: Clone + Send + Sync + 'static,
        A::Error: Send + 'static,
    {
        self.execute_with::<A>(id, command, options, None).await
    }

    /// [`Self::execute`], committing `companion`'s change in the same transaction.
    #[tracing::instrument(name = "command", skip_all, fields(aggregate = A::TYPE, id = %id), err(level = "debug"))]
    pub async fn execute_with<B>(
        &self,
        id: &str,
        command: A::Command,
        options: CommandOptions<A>,
        companion: Option<Companion<'_, A, B>>,
    ) -> CommandResult<A>
    where
        A::Command: Clone + Send + Sync + 'static,
        A::Error: Send + 'static,
        B: Aggregate<Services = ()> + Clone + 'static,
        B::Command: Clone,
    {
        let metadata = options.metadata.to_stored()?;
        let request = Request {
            command,
            metadata,
            options,
        };
        let result = if request.options.is_plain() && companion.is_none() {
            self.execute_grouped(id, request).await
        } else {
            let mut locked = self.lock(id).await;
            self.commit_group(&mut locked, std::slice::from_ref(&request), companion)
                .await
                .map_err(CommandError::from)
                .and_then(|mut results| results.remove(0))
        };
        let outcome = match &result {
            Ok(_) => "accepted",
            Err(
                CommandError::Rejected(_)
                | CommandError::VersionMismatch { .. }
                | CommandError::ClaimTaken(_)
                | CommandError::TooLarge { .. }
                | CommandError::CompanionRefused(_),
            ) => "rejected",
            Err(CommandError::Conflict) => "conflict",
            Err(CommandError::DuplicateRequest) => "duplicate",
            Err(CommandError::Fenced(_)) => "fenced",
            Err(CommandError::Infrastructure(_)) => "error",
        };
        metrics::counter!("commerce_commands_total", "aggregate" => A::TYPE, "outcome" => outcome)
            .increment(1);
        result
    }

    /// Queues a plain command for its aggregate and has it decided with whatever else queued
    /// meanwhile. The group is committed by a task of its own: a caller that goes away (a client
    /// hanging up) cannot leave the others of its group without an answer.
    async fn execute_grouped(&self, id: &str, request: Request<A>) -> CommandResult<A>
    where
        A::Command: Clone + Send + Sync + 'static,
        A::Error: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.shared
            .queues
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(id.to_owned())
            .or_default()
            .push(Queued { request, reply });
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
        let (requests, replies): (Vec<_>, Vec<_>) = group
            .into_iter()
            .map(|queued| (queued.request, queued.reply))
            .unzip();
        let results = match self.commit_group::<A>(&mut locked, &requests, None).await {
            Ok(results) => results,
            // One command the database refuses (a payload it cannot store) must not fail the
            // others: try each alone. Only a refusal says the group did not land; after a
            // failure on the way (`Unknown`) none is decided again.
            Err(CommitError::Database(_)) if requests.len() > 1 => {
                let mut results = Vec::with_capacity(requests.len());
                for request in &requests {
                    let alone =
                        self.commit_group::<A>(&mut locked, std::slice::from_ref(request), None);
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

    /// Decides `requests` in order, each on the state the previous left, stages their events,
    /// claims, idempotency records, guards and the companion's change, and commits them in one
    /// transaction (one append per command, with its own metadata). A refusal fails only its
    /// command; an error fails the whole group, after learning whether a commit whose outcome
    /// is unknown (a lost connection) landed after all. A companion goes only with a group of one.
    async fn commit_group<B>(
        &self,
        locked: &mut Locked<A>,
        requests: &[Request<A>],
        companion: Option<Companion<'_, A, B>>,
    ) -> Result<Vec<CommandResult<A>>, CommitError>
    where
        A::Command: Clone,
        B: Aggregate<Services = ()> + Clone + 'static,
        B::Command: Clone,
    {
        let mut companion = match &companion {
            Some(c) => Some((c, c.repository.lock(&c.id).await)),
            None => None,
        };
        'attempt: for _ in 0..MAX_ATTEMPTS {
            let loaded = locked.load().await?.clone();
            let mut state = loaded.state.clone();
            let mut version = loaded.version;
            let mut decided: Vec<Decision<A>> = Vec::with_capacity(requests.len());
            let mut unit = UnitOfWork::default();
            for request in requests {
                let options = &request.options;
                if options.expected_version.is_some_and(|v| v != version) {
                    decided.push(Err(CommandError::VersionMismatch { current: version }));
                    continue;
                }
                let (next, events) = match decide(&state, request.command.clone()).await {
                    Ok(decision) => decision,
                    Err(refusal) => {
                        decided.push(Err(CommandError::Rejected(refusal)));
                        continue;
                    }
                };
                if let Err(error) =
                    stage_events::<A>(&mut unit, &locked.id, version, &events, &request.metadata)
                {
                    decided.push(Err(error));
                    continue;
                }
                version += events.len() as i64;
                unit.claims.extend(options.claims.iter().cloned());
                if let Some(key) = &options.idempotency {
                    let mut response = (key.respond)(&next);
                    response.etag.get_or_insert(version);
                    // With no event of its own, the answer points at the aggregate's last one.
                    if events.is_empty() {
                        response.position = response.position.or(loaded.position);
                    }
                    unit.idempotency = Some(IdempotencyRecord {
                        scope: key.scope.clone(),
                        key: key.key.clone(),
                        request_hash: key.request_hash.clone(),
                        response,
                    });
                }
                decided.push(Ok((next.clone(), version, events)));
                state = next;
            }
            // An append's sequence check catches decisions on old news; without one, a refusal
            // or a no-op (nothing to restore, say) might rest on another process's old news:
            // check before answering, or before a companion records it as done.
            if unit.appends.is_empty() && locked.is_stale().await? {
                locked.evict();
                continue 'attempt;
            }
            // The companion's change, decided on the command's outcome.
            let mut companion_state = None;
            if let (Some((spec, other)), Some(Ok((next, _, events)))) =
                (companion.as_mut(), decided.first())
            {
                if let Some(command) = (spec.command)(next, events) {
                    let other_loaded = if spec.new {
                        other.start_new()
                    } else {
                        other.load().await?.clone()
                    };
                    match decide(&other_loaded.state, command).await {
                        Ok((other_next, other_events)) => {
                            let metadata = spec.metadata.to_stored()?;
                            let version = other_loaded.version;
                            if let Err(error) = stage_events::<B>(
                                &mut unit,
                                &other.id,
                                version,
                                &other_events,
                                &metadata,
                            ) {
                                return Ok(vec![Err(error.with_refusal_of())]);
                            }
                            let new_version = version + other_events.len() as i64;
                            let snapshot = other.stage_snapshot(
                                &mut unit,
                                &other_loaded,
                                &other_next,
                                new_version,
                            )?;
                            let position = other_loaded.position;
                            companion_state = Some((other_next, new_version, snapshot, position));
                        }
                        Err(refusal) => {
                            if other.is_stale().await? {
                                other.evict();
                                continue 'attempt;
                            }
                            let refused = CommandError::CompanionRefused(refusal.to_string());
                            return Ok(vec![Err(refused)]);
                        }
                    }
                }
            }
            let snapshot_due = locked.stage_snapshot(&mut unit, &loaded, &state, version)?;
            let committed = if unit.writes_anything() {
                match unit.commit_or_find(&self.shared.pool).await {
                    Ok(committed) => committed,
                    Err(error) => {
                        locked.evict();
                        if let Some((_, other)) = companion.as_mut() {
                            other.evict();
                        }
                        match error {
                            CommitError::Conflict => continue 'attempt,
                            other => return Err(other),
                        }
                    }
                }
            } else {
                Default::default()
            };
            if version != loaded.version {
                let position = committed.last_position().or(loaded.position);
                locked.committed(state, version, snapshot_due, position);
            }
            if let (Some((_, other)), Some((state, version, snapshot, position))) =
                (companion.as_mut(), companion_state)
            {
                // The companion's append, when it has one, is the last of the unit.
                let appended = unit
                    .appends
                    .last()
                    .is_some_and(|a| a.aggregate_type == B::TYPE && a.aggregate_id == other.id);
                let position = match appended {
                    true => committed.positions.last().copied().flatten(),
                    false => position,
                };
                other.committed(state, version, snapshot, position);
            }
            let unit_last = committed.last_position();
            let mut positions = committed.positions.into_iter();
            let mut last_position = loaded.position;
            let mut results: Vec<CommandResult<A>> = decided
                .into_iter()
                .map(|decision| {
                    let (state, version, events) = decision?;
                    if !events.is_empty() {
                        last_position = positions.next().flatten().or(last_position);
                    }
                    Ok(Outcome {
                        state,
                        version,
                        position: last_position,
                        events,
                    })
                })
                .collect();
            // A reader of the answer waits for the companion's change too (the placed order).
            if let (Some(_), Some(Ok(outcome))) = (&companion, results.first_mut()) {
                outcome.position = outcome.position.max(unit_last);
            }
            return Ok(results);
        }
        Ok((0..requests.len())
            .map(|_| Err(CommandError::Conflict))
            .collect())
    }
}

impl<A> Locked<A>
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
    fn start_new(&mut self) -> Loaded<A> {
        let fresh = Loaded {
            state: A::default(),
            version: 0,
            position: None,
            snapshot_version: 0,
        };
        *self.slot = Some(fresh.clone());
        fresh
    }

    /// Stages a snapshot of `state` at `version` when one is due; returns whether it did.
    pub(crate) fn stage_snapshot(
        &self,
        unit: &mut UnitOfWork,
        loaded: &Loaded<A>,
        state: &A,
        version: i64,
    ) -> anyhow::Result<bool> {
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
    pub(crate) fn committed(
        &mut self,
        state: A,
        version: i64,
        snapshot_written: bool,
        position: Option<i64>,
    ) {
        let snapshot_version = match (&*self.slot, snapshot_written) {
            (_, true) => version,
            (Some(previous), false) => previous.snapshot_version,
            (None, false) => 0,
        };
        *self.slot = Some(Loaded {
            state,
            version,
            position,
            snapshot_version,
        });
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
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

impl<E: std::error::Error> CommandError<E> {
    /// The same error for another aggregate's command (a companion's), which has no refusal here.
    fn with_refusal_of<F: std::error::Error>(self) -> CommandError<F> {
        match self {
            CommandError::Rejected(refusal) => CommandError::CompanionRefused(refusal.to_string()),
            CommandError::VersionMismatch { current } => CommandError::VersionMismatch { current },
            CommandError::Conflict => CommandError::Conflict,
            CommandError::ClaimTaken(claim) => CommandError::ClaimTaken(claim),
            CommandError::DuplicateRequest => CommandError::DuplicateRequest,
            CommandError::Fenced(why) => CommandError::Fenced(why),
            CommandError::TooLarge { size, limit } => CommandError::TooLarge { size, limit },
            CommandError::CompanionRefused(why) => CommandError::CompanionRefused(why),
            CommandError::Infrastructure(e) => CommandError::Infrastructure(e),
        }
    }
}

/// Stages `events` of aggregate `id` (decided on `version`) as one append; refuses an event
/// that could not travel on the bus.
pub(crate) fn stage_events<A: Aggregate>(
    unit: &mut UnitOfWork,
    id: &str,
    version: i64,
    events: &[A::Event],
    metadata: &serde_json::Value,
) -> Result<(), CommandError<A::Error>> {
    if events.is_empty() {
        return Ok(());
    }
    let events = serialize_events(events)?;
    for (_, _, payload) in &events {
        let size = json_size(payload);
        if size > MAX_EVENT_BYTES {
            return Err(CommandError::TooLarge {
                size,
                limit: MAX_EVENT_BYTES,
            });
        }
    }
    unit.appends.push(Append {
        aggregate_type: A::TYPE,
        aggregate_id: id.to_owned(),
        expected_version: version,
        events,
        metadata: metadata.clone(),
    });
    Ok(())
}

/// The length of `value` as JSON text, counted without building the text.
fn json_size(value: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail; a value that cannot serialise is caught when appended.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// Runs `command` on a copy of `state`: the new state and the events, or the refusal.
pub(crate) async fn decide<A: Aggregate<Services = ()> + Clone>(
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

/// Decodes one stored event of aggregate type `A`, brought to its current version by the
/// domain's upcaster chain first: the one way the store turns rows into events (loading, replay,
/// and any reader that folds a stream, such as time travel).
pub fn decode_event<A: Aggregate>(
    id: &str,
    sequence: i64,
    event_type: &str,
    event_version: &str,
    payload: serde_json::Value,
) -> anyhow::Result<A::Event> {
    let (_, payload) = commerce_domain::upcast::upcast(A::TYPE, event_type, event_version, payload)
        .with_context(|| format!("upcasting {} {id} event {sequence}", A::TYPE))?;
    serde_json::from_value(payload).with_context(|| {
        format!(
            "decoding {} {id} event {sequence} ({event_type} {event_version})",
            A::TYPE
        )
    })
}

/// Folds the latest snapshot and the events after it, read in one round trip. A snapshot that
/// no longer deserialises (the state's shape changed) is ignored and the whole stream replayed.
/// Events are upcast to their current version as they are decoded ([`decode_event`]).
pub async fn load_from_store<A>(pool: &PgPool, id: &str) -> anyhow::Result<Loaded<A>>
where
    A: Aggregate + Clone,
{
    // The snapshot (if any) comes first, flagged, with the position of the event it covers;
    // then the events after it, with their type and version.
    type Row = (
        bool,
        i64,
        serde_json::Value,
        Option<i64>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "WITH snapshot AS ( \
             SELECT last_sequence, payload FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2) \
         SELECT true, last_sequence, payload, \
             (SELECT position FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = last_sequence), \
             NULL::text, NULL::text \
         FROM snapshot \
         UNION ALL \
         (SELECT false, sequence, payload, position, event_type, event_version FROM events \
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
    let (mut state, mut version, mut position) = match rows.next_if(|row| row.0) {
        Some((_, version, payload, position, _, _)) => match serde_json::from_value::<A>(payload) {
            Ok(state) => (state, version, position),
            Err(error) => {
                tracing::warn!(aggregate = A::TYPE, %id, %error, "ignoring a snapshot that no longer deserialises");
                return replay_from_events::<A>(pool, id).await;
            }
        },
        None => (A::default(), 0, None),
    };
    let snapshot_version = version;
    for (_, sequence, payload, at, event_type, event_version) in rows {
        let stored = Stored {
            sequence,
            event_type: event_type.as_deref().unwrap_or_default(),
            event_version: event_version.as_deref().unwrap_or_default(),
            payload,
        };
        apply_stored(&mut state, id, stored)?;
        version = sequence;
        position = at;
    }
    Ok(Loaded {
        state,
        version,
        position,
        snapshot_version,
    })
}

/// Folds every event of the stream from the start, ignoring snapshots.
pub async fn replay_from_events<A>(pool: &PgPool, id: &str) -> anyhow::Result<Loaded<A>>
where
    A: Aggregate,
{
    let folded = fold_as_of::<A>(pool, id, AsOf::Now).await?;
    Ok(match folded {
        Some(folded) => Loaded {
            state: folded.state,
            version: folded.version,
            position: Some(folded.position),
            snapshot_version: 0,
        },
        None => Loaded {
            state: A::default(),
            version: 0,
            position: None,
            snapshot_version: 0,
        },
    })
}

/// How much of a stream to fold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// Every event.
    Now,
    /// The events at or before this global position.
    Position(i64),
    /// The events recorded at or before this instant.
    Instant(DateTime<Utc>),
}

/// A stream folded up to a point: the state after its last event folded.
#[derive(Debug, Clone)]
pub struct Folded<A> {
    pub state: A,
    /// The sequence of the last event folded.
    pub version: i64,
    /// The global position of the last event folded.
    pub position: i64,
    /// When the last event folded was recorded.
    pub recorded_at: DateTime<Utc>,
}

/// Folds the stream's events from the start up to `as_of` (time travel), ignoring snapshots:
/// a snapshot may lie after the point asked for. `None` when no event of the stream is at or
/// before it.
///
/// A stream's positions and recording times grow with its sequence (each append reads the
/// stream's previous events, committed, before it inserts), so the events before a point are a
/// prefix of the stream.
pub async fn fold_as_of<A>(
    pool: &PgPool,
    id: &str,
    as_of: AsOf,
) -> anyhow::Result<Option<Folded<A>>>
where
    A: Aggregate,
{
    let (position, instant) = match as_of {
        AsOf::Now => (None, None),
        AsOf::Position(position) => (Some(position), None),
        AsOf::Instant(instant) => (None, Some(instant)),
    };
    type Row = (i64, String, String, serde_json::Value, i64, DateTime<Utc>);
    let events: Vec<Row> = sqlx::query_as(
        "SELECT sequence, event_type, event_version, payload, position, recorded_at FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 \
           AND ($3::bigint IS NULL OR position <= $3) \
           AND ($4::timestamptz IS NULL OR recorded_at <= $4) \
         ORDER BY sequence",
    )
    .bind(A::TYPE)
    .bind(id)
    .bind(position)
    .bind(instant)
    .fetch_all(pool)
    .await
    .context("reading the events")?;
    let mut folded = None;
    let mut state = A::default();
    for (sequence, event_type, event_version, payload, position, recorded_at) in events {
        let stored = Stored {
            sequence,
            event_type: &event_type,
            event_version: &event_version,
            payload,
        };
        apply_stored(&mut state, id, stored)?;
        folded = Some((sequence, position, recorded_at));
    }
    Ok(folded.map(|(version, position, recorded_at)| Folded {
        state,
        version,
        position,
        recorded_at,
    }))
}

/// Several streams of `A` folded to their end, read in one round trip (an operator's page of
/// sagas): by id, those with events.
pub async fn fold_many<A>(
    pool: &PgPool,
    ids: &[String],
) -> anyhow::Result<HashMap<String, Folded<A>>>
where
    A: Aggregate,
{
    type Row = (
        String,
        i64,
        String,
        String,
        serde_json::Value,
        i64,
        DateTime<Utc>,
    );
    let events: Vec<Row> = sqlx::query_as(
        "SELECT aggregate_id, sequence, event_type, event_version, payload, position, recorded_at \
         FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = ANY($2) ORDER BY aggregate_id, sequence",
    )
    .bind(A::TYPE)
    .bind(ids)
    .fetch_all(pool)
    .await
    .context("reading the events")?;
    let mut folded: HashMap<String, Folded<A>> = HashMap::new();
    for (id, sequence, event_type, event_version, payload, position, recorded_at) in events {
        let stream = folded.entry(id.clone()).or_insert_with(|| Folded {
            state: A::default(),
            version: 0,
            position,
            recorded_at,
        });
        let stored = Stored {
            sequence,
            event_type: &event_type,
            event_version: &event_version,
            payload,
        };
        apply_stored(&mut stream.state, &id, stored)?;
        stream.version = sequence;
        stream.position = position;
        stream.recorded_at = recorded_at;
    }
    Ok(folded)
}

/// Decodes one stored event of `A` and applies it: the one way stored events become state,
/// whether an aggregate is loaded for a command, replayed, or folded up to a point.
fn apply_stored<A: Aggregate>(state: &mut A, id: &str, stored: Stored<'_>) -> anyhow::Result<()> {
    let event = decode_event::<A>(
        id,
        stored.sequence,
        stored.event_type,
        stored.event_version,
        stored.payload,
    )?;
    state.apply(event);
    Ok(())
}

/// One stored event of a stream, as read.
struct Stored<'a> {
    sequence: i64,
    event_type: &'a str,
    event_version: &'a str,
    payload: serde_json::Value,
}

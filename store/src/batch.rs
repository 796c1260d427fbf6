//! Commands to several aggregates, each decided on the state the batch has left so far, and
//! committed together in one transaction: a saga's consecutive steps (reserve every line, mark
//! the order reserved, open the payment, and the saga's record of each) cost one commit instead
//! of one each. A batch of N commands leaves exactly what N single commands would, or nothing.
//!
//! The aggregates a batch touches stay locked in this process until it commits or is dropped;
//! their cached state changes only once the commit is known to have landed. To never deadlock
//! with another batch, a batch only waits for a lock while it holds nothing staged: a lock that
//! is busy once something is staged answers [`BatchError::Busy`], and the caller commits what
//! it has and goes on in a new batch.

use std::any::Any;

use anyhow::Context;
use cqrs_es::Aggregate;
use sqlx::PgPool;

use crate::repository::{decide, stage_events, Locked};
use crate::unit_of_work::{Committed, Guard};
use crate::{CommandError, CommitError, Loaded, Metadata, Repository, UnitOfWork};

/// An aggregate a batch can hold.
pub trait Batched:
    Aggregate<Services = (), Command: Clone + Send, Error: Send> + Clone + 'static
{
}

impl<A> Batched for A where
    A: Aggregate<Services = (), Command: Clone + Send, Error: Send> + Clone + 'static
{
}

/// Why a batch could not take a command.
#[derive(Debug, thiserror::Error)]
pub enum BatchError<E: std::error::Error> {
    /// Another task holds the aggregate and this batch has staged changes: commit them first.
    #[error("the aggregate is busy: commit the batch, then go on in a new one")]
    Busy,
    #[error(transparent)]
    Command(#[from] CommandError<E>),
}

impl<E: std::error::Error> From<anyhow::Error> for BatchError<E> {
    fn from(error: anyhow::Error) -> Self {
        Self::Command(CommandError::Infrastructure(error))
    }
}

/// Changes to several aggregates, committed in one transaction.
pub struct Batch {
    pool: PgPool,
    unit: UnitOfWork,
    held: Vec<Box<dyn Held>>,
    commands: usize,
}

impl Batch {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            unit: UnitOfWork::default(),
            held: Vec::new(),
            commands: 0,
        }
    }

    /// Whether the batch has nothing to commit yet.
    pub fn is_empty(&self) -> bool {
        !self.unit.writes_anything()
    }

    /// The commands that appended events so far.
    pub fn commands(&self) -> usize {
        self.commands
    }

    /// A check run first inside the batch's transaction (a saga worker's lease).
    pub fn guard(&mut self, guard: Guard) {
        self.unit.guards.push(guard);
    }

    /// Aggregate `id` as this batch has left it so far.
    pub async fn state<A>(
        &mut self,
        repository: &Repository<A>,
        id: &str,
    ) -> Result<Loaded<A>, BatchError<A::Error>>
    where
        A: Batched,
    {
        self.hold(repository, id, false).await
    }

    /// [`Self::state`], checked against the store first when no change to it is staged: for
    /// deciding on state another process may have changed (the order a saga drives).
    pub async fn latest<A>(
        &mut self,
        repository: &Repository<A>,
        id: &str,
    ) -> Result<Loaded<A>, BatchError<A::Error>>
    where
        A: Batched,
    {
        self.hold(repository, id, true).await
    }

    /// Whether the batch holds aggregate `id` (and can stage its commands without waiting).
    pub fn holds<A: Batched>(&self, id: &str) -> bool {
        self.held.iter().any(|h| h.is(A::TYPE, id))
    }

    /// Decides `command` on aggregate `id` as the batch left it and stages its events. A refusal
    /// or a no-op is decided on the store's latest state (unless the batch already changed the
    /// aggregate); a refusal stages nothing.
    pub async fn execute<A>(
        &mut self,
        repository: &Repository<A>,
        id: &str,
        command: A::Command,
        metadata: &Metadata,
    ) -> Result<Vec<A::Event>, BatchError<A::Error>>
    where
        A: Batched,
    {
        let metadata = metadata.to_stored()?;
        let index = self.index_of(repository, id).await?;
        let holding = holding_at::<A>(&mut self.held, index)?;
        let mut decided = decide(&holding.state, command.clone()).await;
        // An append's sequence check catches a decision on old news; a refusal or a no-op
        // (nothing to restore, say) has none, so it is decided on the store's latest state.
        let appends_nothing = decided
            .as_ref()
            .map_or(true, |(_, events)| events.is_empty());
        if appends_nothing && holding.refresh().await? {
            decided = decide(&holding.state, command).await;
        }
        let (next, events) = decided.map_err(CommandError::Rejected)?;
        stage_events::<A>(&mut self.unit, id, holding.version, &events, &metadata)?;
        if !events.is_empty() {
            holding.version += events.len() as i64;
            holding.changed = true;
            self.commands += 1;
        }
        holding.state = next;
        Ok(events)
    }

    /// Commits everything staged in one transaction (nothing when nothing is staged): the
    /// global position of the last event written. On any error nothing landed (or it is
    /// unknown), and every aggregate the batch held is read from the store next time.
    pub async fn commit(mut self) -> Result<Option<i64>, CommitError> {
        if self.is_empty() {
            return Ok(None);
        }
        let mut snapshots = Vec::with_capacity(self.held.len());
        for held in &self.held {
            snapshots.push(held.stage_snapshot(&mut self.unit)?);
        }
        match self.unit.commit_or_find(&self.pool).await {
            Ok(committed) => {
                for (held, snapshot) in self.held.iter_mut().zip(snapshots) {
                    held.settle(&self.unit, &committed, snapshot);
                }
                Ok(committed.last_position())
            }
            Err(error) => {
                for held in &mut self.held {
                    held.evict();
                }
                Err(error)
            }
        }
    }

    /// Aggregate `id` as the batch left it, read again first when `fresh` and it is stale.
    async fn hold<A>(
        &mut self,
        repository: &Repository<A>,
        id: &str,
        fresh: bool,
    ) -> Result<Loaded<A>, BatchError<A::Error>>
    where
        A: Batched,
    {
        let index = self.index_of(repository, id).await?;
        let holding = holding_at::<A>(&mut self.held, index)?;
        if fresh {
            holding.refresh().await?;
        }
        Ok(holding.current())
    }

    /// Where the batch keeps aggregate `id`, locking and loading it first if needed.
    async fn index_of<A>(
        &mut self,
        repository: &Repository<A>,
        id: &str,
    ) -> Result<usize, BatchError<A::Error>>
    where
        A: Batched,
    {
        if let Some(index) = self.held.iter().position(|h| h.is(A::TYPE, id)) {
            return Ok(index);
        }
        let locked = match repository.try_lock(id) {
            Some(locked) => locked,
            None if self.is_empty() => {
                // Waiting while holding locks could deadlock with a batch waiting for one of
                // them; with nothing staged, what this batch holds is only cached state, read
                // again (from the cache) when the caller asks for it.
                self.held.clear();
                repository.lock(id).await
            }
            None => return Err(BatchError::Busy),
        };
        let mut locked = locked;
        let base = locked.load().await?.clone();
        self.held.push(Box::new(Holding {
            state: base.state.clone(),
            version: base.version,
            base,
            locked,
            changed: false,
        }));
        Ok(self.held.len() - 1)
    }
}

fn holding_at<A>(held: &mut [Box<dyn Held>], index: usize) -> anyhow::Result<&mut Holding<A>>
where
    A: Batched,
{
    held[index]
        .as_any()
        .downcast_mut::<Holding<A>>()
        .context("a batch holds one aggregate type per key")
}

/// One aggregate a batch holds: its lock, the state it was loaded at, and the state and version
/// the staged commands leave.
struct Holding<A: Aggregate> {
    locked: Locked<A>,
    base: Loaded<A>,
    state: A,
    version: i64,
    /// Whether the batch staged events of this aggregate.
    changed: bool,
}

impl<A> Holding<A>
where
    A: Batched,
{
    async fn reset(&mut self) -> anyhow::Result<()> {
        self.base = self.locked.load().await?.clone();
        self.state = self.base.state.clone();
        self.version = self.base.version;
        Ok(())
    }

    /// Reads the store again if another process changed the aggregate since it was cached (and
    /// the batch changed nothing of it yet): whether it did.
    async fn refresh(&mut self) -> anyhow::Result<bool> {
        if self.changed || !self.locked.is_stale().await? {
            return Ok(false);
        }
        self.locked.evict();
        self.reset().await?;
        Ok(true)
    }

    fn current(&self) -> Loaded<A> {
        let mut loaded = self.base.clone();
        loaded.state = self.state.clone();
        loaded.version = self.version;
        loaded
    }
}

/// A held aggregate, whatever its type.
trait Held: Send {
    fn is(&self, aggregate_type: &str, id: &str) -> bool;
    fn as_any(&mut self) -> &mut dyn Any;
    /// Stages a snapshot when one is due; whether it did.
    fn stage_snapshot(&self, unit: &mut UnitOfWork) -> anyhow::Result<bool>;
    /// Remembers the state the committed batch left.
    fn settle(&mut self, unit: &UnitOfWork, committed: &Committed, snapshot: bool);
    fn evict(&mut self);
}

impl<A> Held for Holding<A>
where
    A: Batched,
{
    fn is(&self, aggregate_type: &str, id: &str) -> bool {
        A::TYPE == aggregate_type && self.locked.id() == id
    }

    fn as_any(&mut self) -> &mut dyn Any {
        self
    }

    fn stage_snapshot(&self, unit: &mut UnitOfWork) -> anyhow::Result<bool> {
        if !self.changed {
            return Ok(false);
        }
        self.locked
            .stage_snapshot(unit, &self.base, &self.state, self.version)
    }

    fn settle(&mut self, unit: &UnitOfWork, committed: &Committed, snapshot: bool) {
        if !self.changed {
            return;
        }
        let position = unit
            .appends
            .iter()
            .zip(&committed.positions)
            .filter(|(append, _)| {
                append.aggregate_type == A::TYPE && append.aggregate_id == self.locked.id()
            })
            .filter_map(|(_, position)| *position)
            .max();
        let state = self.state.clone();
        self.locked
            .committed(state, self.version, snapshot, position);
        self.changed = false;
    }

    fn evict(&mut self) {
        self.locked.evict();
    }
}

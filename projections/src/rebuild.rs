//! Online blue-green rebuilds of a read model from the event store.
//!
//! An operator asks for one ([`start`]); a rebuild runner of a running engine takes it up
//! ([`run_rebuilds`]). Reads keep being served from the live tables, and the live worker keeps
//! applying to them, until the new tables have caught up and are swapped in:
//!
//! 1. **Shadow tables.** Each of the projection's [`tables`](crate::Projection::tables) is
//!    created again, empty, in a schema of its own (`rebuild_<projection>`), with its primary key
//!    and unique constraints; its other indexes wait for the end of the bulk phase. The
//!    projection's own code writes there: its batches run with that schema first on their
//!    `search_path`. So do its dead letters (a shadow `dead_letters`).
//! 2. **Bulk.** Every event that had committed when the rebuild began (`tx_id` below the xid
//!    horizon of that moment) is read in commit order `(tx_id, position)`, in large batches,
//!    the next batch read while this one is applied, and applied through the projection's
//!    `apply_batch`, without the per-aggregate sequence rows of the live path: an aggregate's
//!    events commit in sequence order (each is decided on a state that includes the one before,
//!    read before its transaction began), and below a horizon no transaction is still open, so
//!    reading in commit order meets neither gaps nor duplicates. Each batch commits with the
//!    rebuild's checkpoint, so a killed rebuild resumes where it was.
//! 3. **Catch-up.** The same, with the horizon moving, until it is less than a batch behind.
//! 4. **Swap**, in one transaction: it takes the projection's lock exclusively (every live batch
//!    takes it shared: in-flight ones finish first, the next waits), applies the last events
//!    below the current horizon, sets the projection's per-aggregate sequences from the store
//!    (so the live worker, going on from where it was, skips what the new tables already hold),
//!    replaces its dead letters, and moves the old tables out and the new ones in. Readers see
//!    the old tables until the commit, then the new ones.
//!
//! Only one process works on a rebuild at a time: it holds a session advisory lock on it (freed
//! at once if the process dies, so another takes over from the checkpoint), and every write
//! checks the rebuild's fencing token, taken anew at each claim.

mod jobs;
mod runner;
mod shadow;

pub use runner::{run_rebuilds, RebuildConfig};

/// Advisory lock class (with `hashtext(projection)`) of a projection's live batches, taken
/// shared by each; the swap takes it exclusively.
pub(crate) const PROJECTION_LOCK: i32 = 0x5052_4f4a; // "PROJ"
/// Advisory lock class (with `hashtext(rebuild_id)`) of the process working on a rebuild.
pub(crate) const REBUILD_CLAIM: i32 = 0x5245_4255; // "REBU"

pub use jobs::{
    cancel, list, progress, rebuildable, start, CancelError, RebuildProgress, RebuildState,
    StartError,
};

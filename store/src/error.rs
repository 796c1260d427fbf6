//! What can go wrong when a command is committed.

use crate::Claim;

/// Why a unit of work did not commit.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Another writer appended to one of the streams first.
    #[error("another writer changed the aggregate first")]
    Conflict,
    /// A claim (e-mail, SKU) belongs to someone else.
    #[error("{0} is already taken")]
    ClaimTaken(Claim),
    /// A request with the same idempotency key committed first.
    #[error("a request with this idempotency key was already processed")]
    DuplicateRequest,
    /// A guard refused the write: the process lost the lease it wrote under.
    #[error("fenced off: {0}")]
    Fenced(String),
    /// The connection failed while the commit was under way, and the store could not show it
    /// landed: it may still land, so the command must not be decided again.
    #[error("the outcome of the commit is unknown: {0:#}")]
    Unknown(anyhow::Error),
    #[error(transparent)]
    Database(#[from] anyhow::Error),
}

impl CommitError {
    /// Whether the database answered the commit with a refusal (so nothing of it landed), as
    /// opposed to the connection failing on the way, when it may have landed.
    pub fn refused_by_database(error: &anyhow::Error) -> bool {
        error
            .chain()
            .any(|cause| match cause.downcast_ref::<sqlx::Error>() {
                Some(sqlx::Error::Database(db)) => {
                    let code = db.code().unwrap_or_default();
                    // Connection exceptions and shutdowns can cut a commit off mid-way.
                    !code.starts_with("08") && !code.starts_with("57P")
                }
                // The statement never left the pool.
                Some(sqlx::Error::PoolTimedOut) => true,
                _ => false,
            })
    }
}

/// Why a command did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    /// The aggregate refused it: a business rule.
    #[error(transparent)]
    Rejected(E),
    /// `If-Match` named another version than the current one.
    #[error("the aggregate is at version {current}")]
    VersionMismatch { current: i64 },
    /// Writers kept colliding after every internal retry.
    #[error("too many concurrent writers; try again")]
    Conflict,
    #[error("{0} is already taken")]
    ClaimTaken(Claim),
    #[error("a request with this idempotency key was already processed")]
    DuplicateRequest,
    /// The writer lost the lease it wrote under (a saga worker that stalled): nothing was written.
    #[error("fenced off: {0}")]
    Fenced(String),
    /// An event would not fit on the bus.
    #[error("an event of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    /// The change committed together with the command was refused (a saga step out of order).
    #[error("the accompanying change was refused: {0}")]
    CompanionRefused(String),
    /// The database or the process failed; any `anyhow::Error` is one of these.
    #[error(transparent)]
    Infrastructure(#[from] anyhow::Error),
}

impl<E: std::error::Error> From<CommitError> for CommandError<E> {
    fn from(error: CommitError) -> Self {
        match error {
            CommitError::Conflict => Self::Conflict,
            CommitError::ClaimTaken(claim) => Self::ClaimTaken(claim),
            CommitError::DuplicateRequest => Self::DuplicateRequest,
            CommitError::Fenced(why) => Self::Fenced(why),
            CommitError::Unknown(e) => {
                Self::Infrastructure(e.context("the commit's outcome is unknown"))
            }
            CommitError::Database(e) => Self::Infrastructure(e),
        }
    }
}

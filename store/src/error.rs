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
    #[error(transparent)]
    Database(#[from] anyhow::Error),
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
            CommitError::Database(e) => Self::Infrastructure(e),
        }
    }
}

//! An account: buyer, seller or admin, with a unique e-mail and an argon2 password hash.
//! Uniqueness of the e-mail is kept by the store's claim table, written in the same transaction.

mod aggregate;

pub use aggregate::{Account, AccountCommand, AccountError, AccountEvent};

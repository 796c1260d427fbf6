//! An account: buyer, seller or admin, with a unique e-mail. Uniqueness of the e-mail is kept by
//! the store's claim table and the password hash by its credentials table, both written in the
//! same transaction as the events: neither is ever in an event. The e-mail and the name are
//! personal data, sealed for the account (see [`crate::privacy`]).

mod aggregate;

pub use aggregate::{valid_name, Account, AccountCommand, AccountError, AccountEvent};

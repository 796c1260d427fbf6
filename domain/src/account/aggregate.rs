use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use crate::{Email, Role};

/// Commands on an account.
#[derive(Debug, Clone, PartialEq)]
pub enum AccountCommand {
    /// Open the account. `password_hash` is an argon2 PHC string, never the password.
    Register {
        email: Email,
        name: String,
        role: Role,
        password_hash: String,
    },
}

/// What happened to an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountEvent {
    /// The account was opened.
    AccountRegistered {
        email: Email,
        name: String,
        role: Role,
        password_hash: String,
    },
}

crate::domain_event!(AccountEvent for Account { AccountRegistered });

/// Why an account command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("the account already exists")]
    AlreadyRegistered,
    #[error("name must be 1 to 100 printable characters")]
    InvalidName,
    #[error("the password hash is not an argon2 hash")]
    NotAnArgon2Hash,
}

/// An account as the write side needs it: who it is and how it signs in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub email: Option<Email>,
    pub name: String,
    pub role: Option<Role>,
    pub password_hash: String,
}

impl Aggregate for Account {
    const TYPE: &'static str = "account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;
    type Services = ();

    async fn handle(
        &mut self,
        command: AccountCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), AccountError> {
        let AccountCommand::Register {
            email,
            name,
            role,
            password_hash,
        } = command;
        if self.email.is_some() {
            return Err(AccountError::AlreadyRegistered);
        }
        let name = name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(AccountError::InvalidName);
        }
        if !password_hash.starts_with("$argon2") {
            return Err(AccountError::NotAnArgon2Hash);
        }
        sink.write(
            AccountEvent::AccountRegistered {
                email,
                name,
                role,
                password_hash,
            },
            self,
        )
        .await;
        Ok(())
    }

    fn apply(&mut self, event: AccountEvent) {
        let AccountEvent::AccountRegistered {
            email,
            name,
            role,
            password_hash,
        } = event;
        self.email = Some(email);
        self.name = name;
        self.role = Some(role);
        self.password_hash = password_hash;
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    type AccountTest = TestFramework<Account>;

    fn register(name: &str, hash: &str) -> AccountCommand {
        AccountCommand::Register {
            email: Email::parse("ada@example.com").unwrap(),
            name: name.into(),
            role: Role::Buyer,
            password_hash: hash.into(),
        }
    }

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";

    #[test]
    fn registering_opens_the_account() {
        AccountTest::with(())
            .given_no_previous_events()
            .when(register(" Ada ", HASH))
            .then_expect_events(vec![AccountEvent::AccountRegistered {
                email: Email::parse("ada@example.com").unwrap(),
                name: "Ada".into(),
                role: Role::Buyer,
                password_hash: HASH.into(),
            }]);
    }

    #[test]
    fn an_account_registers_once() {
        let registered = AccountEvent::AccountRegistered {
            email: Email::parse("ada@example.com").unwrap(),
            name: "Ada".into(),
            role: Role::Buyer,
            password_hash: HASH.into(),
        };
        AccountTest::with(())
            .given(vec![registered])
            .when(register("Ada", HASH))
            .then_expect_error(AccountError::AlreadyRegistered);
    }

    #[test]
    fn a_name_is_required() {
        AccountTest::with(())
            .given_no_previous_events()
            .when(register("  ", HASH))
            .then_expect_error(AccountError::InvalidName);
    }

    #[test]
    fn only_an_argon2_hash_is_stored() {
        AccountTest::with(())
            .given_no_previous_events()
            .when(register("Ada", "hunter2"))
            .then_expect_error(AccountError::NotAnArgon2Hash);
    }
}

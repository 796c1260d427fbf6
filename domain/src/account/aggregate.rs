use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use crate::{Email, Role};

/// Commands on an account.
#[derive(Debug, Clone, PartialEq)]
pub enum AccountCommand {
    /// Open the account. Its password hash is not part of it: credentials are kept beside the
    /// events (the store's credentials table), never in them.
    Register {
        email: Email,
        name: String,
        role: Role,
    },
}

/// What happened to an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountEvent {
    /// The account was opened. Version 1 also held the password hash; the upcaster drops it
    /// (`crate::upcast`), so nothing that reads events sees it.
    AccountRegistered {
        email: Email,
        name: String,
        role: Role,
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
}

/// An account as the write side needs it: who it is. How it signs in is in the credentials
/// table, not here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub email: Option<Email>,
    pub name: String,
    pub role: Option<Role>,
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
        let AccountCommand::Register { email, name, role } = command;
        if self.email.is_some() {
            return Err(AccountError::AlreadyRegistered);
        }
        let name = name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(AccountError::InvalidName);
        }
        sink.write(AccountEvent::AccountRegistered { email, name, role }, self)
            .await;
        Ok(())
    }

    fn apply(&mut self, event: AccountEvent) {
        let AccountEvent::AccountRegistered { email, name, role } = event;
        self.email = Some(email);
        self.name = name;
        self.role = Some(role);
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    type AccountTest = TestFramework<Account>;

    fn register(name: &str) -> AccountCommand {
        AccountCommand::Register {
            email: Email::parse("ada@example.com").unwrap(),
            name: name.into(),
            role: Role::Buyer,
        }
    }

    #[test]
    fn registering_opens_the_account() {
        AccountTest::with(())
            .given_no_previous_events()
            .when(register(" Ada "))
            .then_expect_events(vec![AccountEvent::AccountRegistered {
                email: Email::parse("ada@example.com").unwrap(),
                name: "Ada".into(),
                role: Role::Buyer,
            }]);
    }

    #[test]
    fn an_account_registers_once() {
        let registered = AccountEvent::AccountRegistered {
            email: Email::parse("ada@example.com").unwrap(),
            name: "Ada".into(),
            role: Role::Buyer,
        };
        AccountTest::with(())
            .given(vec![registered])
            .when(register("Ada"))
            .then_expect_error(AccountError::AlreadyRegistered);
    }

    #[test]
    fn a_name_is_required() {
        AccountTest::with(())
            .given_no_previous_events()
            .when(register("  "))
            .then_expect_error(AccountError::InvalidName);
    }
}

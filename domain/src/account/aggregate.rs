use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use crate::privacy::{Personal, Sealed};
use crate::Role;

/// Commands on an account.
#[derive(Debug, Clone, PartialEq)]
pub enum AccountCommand {
    /// Open the account. The caller validated the e-mail ([`crate::Email::parse`]) and the
    /// name ([`valid_name`]) and sealed both for the account.
    Register {
        email: Sealed,
        name: Sealed,
        role: Role,
    },
    /// Forget the person: their data key is destroyed in the same transaction, so every sealed
    /// value of theirs reads as forgotten from then on. Forgetting twice changes nothing.
    Forget,
}

/// What happened to an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum AccountEvent {
    /// The account was opened. Version 2 dropped the password hash (it lives in the
    /// credentials table); version 3 seals the e-mail and the name.
    AccountRegistered {
        email: Personal,
        name: Personal,
        role: Role,
    },
    /// The person asked to be forgotten (or an admin did it for them): their key is gone.
    AccountForgotten,
}

crate::domain_event!(AccountEvent for Account { AccountRegistered, AccountForgotten });

/// Why an account command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("the account already exists")]
    AlreadyRegistered,
    #[error("name must be 1 to 100 printable characters")]
    InvalidName,
    #[error("the account does not exist")]
    NotRegistered,
}

/// The name as an account keeps it (trimmed), if it is 1 to 100 printable characters.
pub fn valid_name(name: &str) -> Result<String, AccountError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(AccountError::InvalidName);
    }
    Ok(name.to_owned())
}

/// An account as the write side needs it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub email: Option<Personal>,
    pub name: Option<Personal>,
    pub role: Option<Role>,
    #[serde(default)]
    pub forgotten: bool,
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
        let event = match command {
            AccountCommand::Register { email, name, role } => {
                if self.role.is_some() {
                    return Err(AccountError::AlreadyRegistered);
                }
                AccountEvent::AccountRegistered {
                    email: email.into(),
                    name: name.into(),
                    role,
                }
            }
            AccountCommand::Forget => {
                if self.role.is_none() {
                    return Err(AccountError::NotRegistered);
                }
                if self.forgotten {
                    return Ok(());
                }
                AccountEvent::AccountForgotten
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: AccountEvent) {
        match event {
            AccountEvent::AccountRegistered { email, name, role } => {
                self.email = Some(email);
                self.name = Some(name);
                self.role = Some(role);
            }
            AccountEvent::AccountForgotten => self.forgotten = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    type AccountTest = TestFramework<Account>;

    /// The aggregate never opens a sealed value: any ciphertext will do.
    fn sealed(text: &str) -> Sealed {
        Sealed {
            sealed_for: uuid::Uuid::from_u128(1),
            ciphertext: text.into(),
        }
    }

    fn register() -> AccountCommand {
        AccountCommand::Register {
            email: sealed("ZW1haWw="),
            name: sealed("bmFtZQ=="),
            role: Role::Buyer,
        }
    }

    fn registered() -> AccountEvent {
        AccountEvent::AccountRegistered {
            email: sealed("ZW1haWw=").into(),
            name: sealed("bmFtZQ==").into(),
            role: Role::Buyer,
        }
    }

    #[test]
    fn registering_opens_the_account() {
        AccountTest::with(())
            .given_no_previous_events()
            .when(register())
            .then_expect_events(vec![registered()]);
    }

    #[test]
    fn an_account_registers_once() {
        AccountTest::with(())
            .given(vec![registered()])
            .when(register())
            .then_expect_error(AccountError::AlreadyRegistered);
    }

    #[test]
    fn a_name_is_1_to_100_printable_characters_trimmed() {
        assert_eq!(valid_name(" Ada "), Ok("Ada".into()));
        assert_eq!(valid_name("  "), Err(AccountError::InvalidName));
        assert_eq!(valid_name("A\u{7}da"), Err(AccountError::InvalidName));
        assert_eq!(valid_name(&"a".repeat(101)), Err(AccountError::InvalidName));
    }

    #[test]
    fn an_account_is_forgotten_once() {
        AccountTest::with(())
            .given(vec![registered()])
            .when(AccountCommand::Forget)
            .then_expect_events(vec![AccountEvent::AccountForgotten]);
        AccountTest::with(())
            .given(vec![registered(), AccountEvent::AccountForgotten])
            .when(AccountCommand::Forget)
            .then_expect_events(vec![]);
        AccountTest::with(())
            .given_no_previous_events()
            .when(AccountCommand::Forget)
            .then_expect_error(AccountError::NotRegistered);
    }

    #[test]
    fn an_account_registered_before_sealing_still_reads() {
        let v1 = serde_json::json!({"AccountRegistered": {
            "email": "ada@example.com", "name": "Ada", "role": "buyer"}});
        let event: AccountEvent = serde_json::from_value(v1).unwrap();
        assert!(matches!(
            event,
            AccountEvent::AccountRegistered {
                email: Personal::Clear(_),
                ..
            }
        ));
    }
}

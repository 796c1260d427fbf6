//! Personal data in events: sealed under a key per person, so that it can be forgotten.
//!
//! Events are immutable and kept for ever; people have the right to be forgotten. So a personal
//! value (a name, an e-mail address, a shipping address) never enters an event in the clear: it
//! enters as a [`Sealed`] value, AES-256-GCM encrypted under the [`DataKey`] of the person it
//! belongs to, with that person's id as associated data (a ciphertext moved to another person's
//! name does not open). The keys live in their own table, never in events nor on NATS.
//! Forgetting a person destroys their key: every sealed value of theirs, in every event, copy
//! and backup of the stream, is noise from then on, and readers show [`FORGOTTEN`] instead.
//!
//! A sealed value is JSON `{"sealed_for": "<person id>", "ciphertext": "<base64>"}`, the
//! ciphertext being the 12-byte nonce followed by the encrypted JSON value and its tag. Readers
//! find sealed values at any depth of a document by those two fields ([`Sealed::find`]), so one
//! step reveals a whole response, whatever read model it came from.

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// What a reader shows in place of a forgotten person's value.
pub const FORGOTTEN: &str = "forgotten";

const NONCE_LEN: usize = 12;

/// A person's data key: 32 random bytes.
#[derive(Clone)]
pub struct DataKey([u8; 32]);

impl DataKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let key = aes_gcm::Key::<Aes256Gcm>::generate();
        let mut bytes = [0; 32];
        bytes.copy_from_slice(&key);
        Self(bytes)
    }

    /// The key stored as `bytes`; `None` unless they are 32.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Self(bytes.try_into().ok()?))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.0.into())
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// A personal value encrypted under its person's [`DataKey`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    /// Whose value it is: the key that opens it is this person's.
    pub sealed_for: Uuid,
    /// Base64 of the nonce, the encrypted JSON value and its tag.
    pub ciphertext: String,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealed(for {})", self.sealed_for)
    }
}

/// A personal value as an event holds it: [`Sealed`]; in events written before personal data
/// was sealed, in the clear. Those older events are immutable: readers show their values as
/// they are (a forgotten person's sealed values only can be erased). Nothing writes `Clear`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Personal {
    Sealed(Sealed),
    Clear(Value),
}

/// As the public sees a personal value (a webhook's body, the event catalogue): opened, or
/// `"forgotten"` once its person is.
impl utoipa::PartialSchema for Personal {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .description(Some(
                "personal data: the value (a name, an e-mail address, a shipping address), \
                 or the string `forgotten` once its person asked to be forgotten",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Personal {}

impl From<Sealed> for Personal {
    fn from(sealed: Sealed) -> Self {
        Self::Sealed(sealed)
    }
}

/// Never prints a value in the clear: events and states are logged.
impl std::fmt::Debug for Personal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sealed(sealed) => sealed.fmt(f),
            Self::Clear(_) => f.write_str("Personal(written before sealing)"),
        }
    }
}

/// Why a value could not be sealed: it is not JSON (a map with keys that are not strings), or
/// larger than AES-GCM takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a personal value could not be sealed")]
pub struct Unsealable;

/// Why a sealed value did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a sealed value of person {0} does not open with that person's key")]
pub struct Unopenable(pub Uuid);

impl Sealed {
    /// `value`, as JSON, sealed for `person` under `key`.
    pub fn seal<T: Serialize + ?Sized>(
        key: &DataKey,
        person: Uuid,
        value: &T,
    ) -> Result<Self, Unsealable> {
        let plaintext = serde_json::to_vec(value).map_err(|_| Unsealable)?;
        let nonce = Nonce::generate();
        let ciphertext = key
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: &plaintext,
                    aad: person.as_bytes(),
                },
            )
            .map_err(|_| Unsealable)?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        Ok(Self {
            sealed_for: person,
            ciphertext: STANDARD.encode(sealed),
        })
    }

    /// The value, opened with the key of `sealed_for`.
    pub fn open(&self, key: &DataKey) -> Result<Value, Unopenable> {
        let unopenable = || Unopenable(self.sealed_for);
        let bytes = STANDARD
            .decode(&self.ciphertext)
            .map_err(|_| unopenable())?;
        if bytes.len() < NONCE_LEN {
            return Err(unopenable());
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| unopenable())?;
        let plaintext = key
            .cipher()
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: self.sealed_for.as_bytes(),
                },
            )
            .map_err(|_| unopenable())?;
        serde_json::from_slice(&plaintext).map_err(|_| unopenable())
    }

    /// The sealed value `value` is, if it has the shape of one.
    pub fn parse(value: &Value) -> Option<Self> {
        let fields = value.as_object()?;
        if fields.len() != 2 {
            return None;
        }
        Some(Self {
            sealed_for: fields.get("sealed_for")?.as_str()?.parse().ok()?,
            ciphertext: fields.get("ciphertext")?.as_str()?.to_owned(),
        })
    }

    /// The people whose sealed values are anywhere in `document`.
    pub fn people_in(document: &Value) -> Vec<Uuid> {
        let mut people = Vec::new();
        Self::find(document, &mut |sealed| people.push(sealed.sealed_for));
        people.sort();
        people.dedup();
        people
    }

    fn find(document: &Value, found: &mut impl FnMut(Sealed)) {
        if let Some(sealed) = Self::parse(document) {
            return found(sealed);
        }
        match document {
            Value::Object(fields) => fields.values().for_each(|v| Self::find(v, found)),
            Value::Array(items) => items.iter().for_each(|v| Self::find(v, found)),
            _ => {}
        }
    }

    /// Replaces every sealed value in `document`, at any depth, by what it holds, opened with
    /// `key_of` its person; by [`FORGOTTEN`] when that person has no key any more (or the value
    /// does not open with it).
    pub fn reveal_in(document: &mut Value, key_of: &impl Fn(Uuid) -> Option<DataKey>) {
        if let Some(sealed) = Self::parse(document) {
            *document = key_of(sealed.sealed_for)
                .and_then(|key| sealed.open(&key).ok())
                .unwrap_or_else(|| Value::String(FORGOTTEN.to_owned()));
            return;
        }
        match document {
            Value::Object(fields) => fields.values_mut().for_each(|v| Self::reveal_in(v, key_of)),
            Value::Array(items) => items.iter_mut().for_each(|v| Self::reveal_in(v, key_of)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_sealed_value_opens_with_its_persons_key_only() {
        let (ada, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let (ada_key, bob_key) = (DataKey::generate(), DataKey::generate());
        let address = json!({"name": "Ada Lovelace", "city": "London"});
        let sealed = Sealed::seal(&ada_key, ada, &address).unwrap();
        assert!(!sealed.ciphertext.contains("Ada"));
        assert_eq!(sealed.open(&ada_key), Ok(address));
        assert_eq!(sealed.open(&bob_key), Err(Unopenable(ada)));
        // Moved to another person's name, it does not open even with the right key.
        let moved = Sealed {
            sealed_for: bob,
            ..sealed
        };
        assert!(moved.open(&ada_key).is_err());
    }

    #[test]
    fn two_seals_of_one_value_differ() {
        let (ada, key) = (Uuid::now_v7(), DataKey::generate());
        assert_ne!(
            Sealed::seal(&key, ada, "Ada").unwrap().ciphertext,
            Sealed::seal(&key, ada, "Ada").unwrap().ciphertext
        );
    }

    #[test]
    fn revealing_opens_what_has_a_key_and_forgets_the_rest_at_any_depth() {
        let (ada, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let ada_key = DataKey::generate();
        let bob_key = DataKey::generate();
        let mut document = json!({
            "items": [
                {"author": Sealed::seal(&ada_key, ada, "Ada").unwrap(), "rating": 5},
                {"author": Sealed::seal(&bob_key, bob, "Bob").unwrap(), "rating": 4},
            ],
            "sealed_for": "not a sealed value on its own",
        });
        assert_eq!(Sealed::people_in(&document), {
            let mut both = vec![ada, bob];
            both.sort();
            both
        });
        Sealed::reveal_in(&mut document, &|person| {
            (person == ada).then(|| ada_key.clone())
        });
        assert_eq!(
            document,
            json!({
                "items": [{"author": "Ada", "rating": 5}, {"author": FORGOTTEN, "rating": 4}],
                "sealed_for": "not a sealed value on its own",
            })
        );
    }
}

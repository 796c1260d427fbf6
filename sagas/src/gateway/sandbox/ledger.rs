//! The sandbox's books: every payment, and the replies stored by idempotency key. Plain
//! bookkeeping run under one lock; the HTTP layer around it does the waiting (for `tok_slow`'s
//! late answer, for `tok_timeout`'s none).

use std::collections::HashMap;

use axum::http::StatusCode;
use commerce_domain::Money;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::payment::{Authorization, Payment};
use super::views::{CallOutcome, PaymentView};
use crate::gateway::wire::{AmountRequest, AuthorizeRequest, Step};

const KEY_REUSED: &str = "this Idempotency-Key was already used for a different request";

/// A parsed call. No `Debug`: it holds the card token.
pub(super) enum Call {
    Authorize { amount: Money, token: String },
    Capture { amount: Money },
    Void,
    Refund { amount: Money },
}

impl Call {
    /// The call a request body makes, or why it makes none.
    pub(super) fn parse(step: Step, body: &[u8]) -> Result<Self, String> {
        let call = match step {
            Step::Authorize => {
                let AuthorizeRequest { amount, token } = decode(body)?;
                Call::Authorize { amount, token }
            }
            Step::Capture => Call::Capture {
                amount: decode::<AmountRequest>(body)?.amount,
            },
            Step::Refund => Call::Refund {
                amount: decode::<AmountRequest>(body)?.amount,
            },
            Step::Void => return Ok(Call::Void),
        };
        match call {
            Call::Authorize { amount, .. } | Call::Capture { amount } | Call::Refund { amount }
                if amount.amount <= 0 =>
            {
                Err(format!("amount must be positive, got {}", amount.amount))
            }
            call => Ok(call),
        }
    }

    fn step(&self) -> Step {
        match self {
            Call::Authorize { .. } => Step::Authorize,
            Call::Capture { .. } => Step::Capture,
            Call::Void => Step::Void,
            Call::Refund { .. } => Step::Refund,
        }
    }

    /// What a repeated idempotency key must carry again to be a retry of the same request.
    fn fingerprint(&self, payment_id: &str) -> String {
        let step = self.step().as_str();
        match self {
            Call::Authorize { amount, token } => {
                format!(
                    "{payment_id}/{step}/{} {}/{token}",
                    amount.amount, amount.currency
                )
            }
            Call::Capture { amount } | Call::Refund { amount } => {
                format!("{payment_id}/{step}/{} {}", amount.amount, amount.currency)
            }
            Call::Void => format!("{payment_id}/{step}"),
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|error| format!("invalid request body: {error}"))
}

/// An HTTP answer, kept to be given again for a repeated idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    pub(super) fn ok(body: Value) -> Self {
        Self {
            status: StatusCode::OK,
            body,
        }
    }

    pub(super) fn error(status: StatusCode, code: &str, reason: &str) -> Self {
        Self {
            status,
            body: json!({ "code": code, "reason": reason }),
        }
    }

    /// Only answers that settled something are stored: a 503 or a 409 did nothing, so doing
    /// the request again later is no double action.
    fn is_stored(&self) -> bool {
        self.status.is_success() || self.status == StatusCode::PAYMENT_REQUIRED
    }
}

/// What the HTTP layer is to do with a call.
pub(super) enum Begin {
    /// Give this answer now.
    Reply(Reply),
    /// Answer as the request in flight under the same key does (never, if it never does).
    Wait(watch::Receiver<Option<Reply>>),
    /// `tok_slow`: after [`super::SLOW_ANSWER`], [`Ledger::land`] this and answer as it says.
    Slow(Pending),
    /// `tok_timeout`: never answer.
    Hold,
}

/// A `tok_slow` authorisation on its way.
pub(super) struct Pending {
    pub payment_id: String,
    pub key: String,
    call: usize,
    amount: Money,
    /// Tells the waiting requests (the first and any replays) the answer.
    pub done: watch::Sender<Option<Reply>>,
}

enum Slot {
    InFlight {
        fingerprint: String,
        answer: watch::Receiver<Option<Reply>>,
    },
    Done {
        fingerprint: String,
        reply: Reply,
    },
}

impl Slot {
    fn fingerprint(&self) -> &str {
        match self {
            Slot::InFlight { fingerprint, .. } | Slot::Done { fingerprint, .. } => fingerprint,
        }
    }
}

/// Every payment and every stored reply.
#[derive(Default)]
pub(super) struct Ledger {
    payments: HashMap<String, Payment>,
    replies: HashMap<String, Slot>,
}

impl Ledger {
    /// Take a call under idempotency key `key`: replay, refuse or act on it.
    pub(super) fn begin(&mut self, payment_id: &str, key: &str, call: Call) -> Begin {
        let step = call.step();
        let fingerprint = call.fingerprint(payment_id);
        let seq = self.payments.len();
        let payment = self
            .payments
            .entry(payment_id.to_owned())
            .or_insert_with(|| Payment::new(seq));

        if let Some(slot) = self.replies.get(key) {
            let (begin, outcome, detail) = if slot.fingerprint() != fingerprint {
                let reply = Reply::error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    KEY_REUSED,
                );
                (Begin::Reply(reply), CallOutcome::Rejected, Some(KEY_REUSED))
            } else {
                match slot {
                    Slot::Done { reply, .. } => {
                        (Begin::Reply(reply.clone()), CallOutcome::Replayed, None)
                    }
                    Slot::InFlight { answer, .. } => (
                        Begin::Wait(answer.clone()),
                        CallOutcome::Replayed,
                        Some("joined the request in flight under this key"),
                    ),
                }
            };
            payment.record(step, key, outcome, detail.map(str::to_owned));
            return begin;
        }

        let answer = match call {
            Call::Authorize { amount, token } => match payment.authorize(amount, &token) {
                Authorization::Now(answer) => answer,
                Authorization::Slow => {
                    let call = payment.record(step, key, CallOutcome::Pending, None);
                    let (done, answer) = watch::channel(None);
                    self.replies.insert(
                        key.to_owned(),
                        Slot::InFlight {
                            fingerprint,
                            answer,
                        },
                    );
                    return Begin::Slow(Pending {
                        payment_id: payment_id.to_owned(),
                        key: key.to_owned(),
                        call,
                        amount,
                        done,
                    });
                }
                Authorization::Hold => {
                    payment.record(step, key, CallOutcome::Held, None);
                    // Nobody will ever send on it: replays of this key hang too.
                    let (_, answer) = watch::channel(None);
                    self.replies.insert(
                        key.to_owned(),
                        Slot::InFlight {
                            fingerprint,
                            answer,
                        },
                    );
                    return Begin::Hold;
                }
            },
            Call::Capture { amount } => payment.capture(amount),
            Call::Void => payment.void(),
            Call::Refund { amount } => payment.refund(amount),
        };
        payment.record(step, key, answer.outcome, answer.detail);
        if answer.reply.is_stored() {
            let reply = answer.reply.clone();
            self.replies
                .insert(key.to_owned(), Slot::Done { fingerprint, reply });
        }
        Begin::Reply(answer.reply)
    }

    /// Record a call refused before it could be parsed (no key, bad body) and say why.
    pub(super) fn reject(
        &mut self,
        payment_id: &str,
        step: Step,
        key: &str,
        reply: Reply,
    ) -> Reply {
        let seq = self.payments.len();
        let detail = reply.body["reason"].as_str().map(str::to_owned);
        self.payments
            .entry(payment_id.to_owned())
            .or_insert_with(|| Payment::new(seq))
            .record(step, key, CallOutcome::Rejected, detail);
        reply
    }

    /// `tok_slow`'s late answer: authorise (and void at once if a void came meanwhile), store
    /// the answer under its key and return it.
    pub(super) fn land(&mut self, pending: &Pending) -> Reply {
        let seq = self.payments.len();
        let reply = self
            .payments
            .entry(pending.payment_id.clone())
            .or_insert_with(|| Payment::new(seq))
            .land(pending.amount, pending.call);
        if let Some(Slot::InFlight { fingerprint, .. }) = self.replies.remove(&pending.key) {
            let reply = reply.clone();
            self.replies
                .insert(pending.key.clone(), Slot::Done { fingerprint, reply });
        }
        reply
    }

    /// One payment; one the sandbox never heard of is `none` with no calls.
    pub(super) fn view(&self, payment_id: &str) -> PaymentView {
        match self.payments.get(payment_id) {
            Some(payment) => payment.view(payment_id),
            None => Payment::new(0).view(payment_id),
        }
    }

    /// Every payment, oldest first.
    pub(super) fn views(&self) -> Vec<PaymentView> {
        let mut payments: Vec<_> = self.payments.iter().collect();
        payments.sort_by_key(|(_, payment)| payment.seq);
        payments
            .into_iter()
            .map(|(id, payment)| payment.view(id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use commerce_domain::Currency;

    use super::*;
    use crate::gateway::PaymentStatus;

    fn eur(amount: i64) -> Money {
        Money::new(amount, Currency::parse("EUR").unwrap())
    }

    fn authorize(token: &str, amount: i64) -> Call {
        Call::Authorize {
            amount: eur(amount),
            token: token.to_owned(),
        }
    }

    fn status_of(begin: Begin) -> StatusCode {
        match begin {
            Begin::Reply(reply) => reply.status,
            _ => panic!("expected an immediate reply"),
        }
    }

    #[test]
    fn a_repeated_key_replays_the_first_answer_without_authorising_again() {
        let mut ledger = Ledger::default();
        let first = ledger.begin("p", "p:authorize", authorize("tok_ok", 100));
        let again = ledger.begin("p", "p:authorize", authorize("tok_ok", 100));
        let (Begin::Reply(first), Begin::Reply(again)) = (first, again) else {
            panic!("expected immediate replies");
        };
        assert_eq!(first, again);
        let view = ledger.view("p");
        assert_eq!(view.successful_authorizations, 1);
        assert_eq!(view.calls[1].outcome, CallOutcome::Replayed);
    }

    #[test]
    fn a_key_reused_for_another_request_is_refused() {
        let mut ledger = Ledger::default();
        ledger.begin("p", "k", authorize("tok_ok", 100));
        let other = ledger.begin("p", "k", authorize("tok_ok", 200));
        assert_eq!(status_of(other), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(ledger.view("p").authorized_amount, Some(eur(100)));
    }

    #[test]
    fn a_void_while_authorising_voids_the_authorisation_when_it_lands() {
        let mut ledger = Ledger::default();
        let Begin::Slow(pending) = ledger.begin("p", "p:authorize", authorize("tok_slow", 100))
        else {
            panic!("tok_slow answers late");
        };
        assert_eq!(
            status_of(ledger.begin("p", "p:void", Call::Void)),
            StatusCode::OK
        );
        assert_eq!(ledger.view("p").status, PaymentStatus::None);
        assert_eq!(ledger.land(&pending).status, StatusCode::OK);
        let view = ledger.view("p");
        assert_eq!(view.status, PaymentStatus::Voided);
        assert_eq!(view.successful_authorizations, 1);
        assert_eq!(view.calls[0].outcome, CallOutcome::Authorized);
    }

    #[test]
    fn amounts_must_be_positive() {
        let body = br#"{"amount": {"amount": 0, "currency": "EUR"}}"#;
        assert!(Call::parse(Step::Capture, body).is_err());
        assert!(Call::parse(Step::Void, b"").is_ok());
    }
}

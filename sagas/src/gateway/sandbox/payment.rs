//! One payment's rules at the sandbox: what each token does, what capture, void and refund may
//! take, and the calls recorded on it.

use axum::http::StatusCode;
use chrono::Utc;
use commerce_domain::Money;
use serde_json::json;
use uuid::Uuid;

use super::ledger::Reply;
use super::views::{CallOutcome, CallView, PaymentStatus, PaymentView};
use super::SLOW_ANSWER;
use crate::gateway::wire::Step;

/// How many 503s `tok_flaky` gives a payment before it authorises.
const FLAKY_FAILURES: u32 = 2;

/// What one call did: recorded as `outcome`, answered with `reply`.
pub(super) struct Answer {
    pub outcome: CallOutcome,
    pub detail: Option<String>,
    pub reply: Reply,
}

impl Answer {
    fn done(outcome: CallOutcome, reply: Reply) -> Self {
        Self {
            outcome,
            detail: None,
            reply,
        }
    }

    fn refused(status: StatusCode, code: &str, reason: String) -> Self {
        let outcome = if status == StatusCode::PAYMENT_REQUIRED {
            CallOutcome::Declined
        } else if status.is_server_error() {
            CallOutcome::Unavailable
        } else {
            CallOutcome::Rejected
        };
        Self {
            outcome,
            reply: Reply::error(status, code, &reason),
            detail: Some(reason),
        }
    }

    fn conflict(reason: impl Into<String>) -> Self {
        Self::refused(StatusCode::CONFLICT, "conflict", reason.into())
    }
}

/// What an authorisation does: answer now, late (`tok_slow`) or never (`tok_timeout`).
pub(super) enum Authorization {
    Now(Answer),
    Slow,
    Hold,
}

/// One payment's state and the calls made on it.
pub(super) struct Payment {
    /// Its place in `GET /v1/payments`.
    pub seq: usize,
    status: PaymentStatus,
    authorization_id: Option<String>,
    authorized: Option<Money>,
    captured: i64,
    refunded: i64,
    successful_authorizations: u32,
    flaky_failures: u32,
    authorizations_in_flight: u32,
    /// A void came: any authorisation landing later is voided at once, none new is taken.
    void_requested: bool,
    calls: Vec<CallView>,
}

impl Payment {
    pub(super) fn new(seq: usize) -> Self {
        Self {
            seq,
            status: PaymentStatus::None,
            authorization_id: None,
            authorized: None,
            captured: 0,
            refunded: 0,
            successful_authorizations: 0,
            flaky_failures: 0,
            authorizations_in_flight: 0,
            void_requested: false,
            calls: Vec::new(),
        }
    }

    /// Append a call; its index.
    pub(super) fn record(
        &mut self,
        step: Step,
        key: &str,
        outcome: CallOutcome,
        detail: Option<String>,
    ) -> usize {
        self.calls.push(CallView {
            step,
            idempotency_key: key.to_owned(),
            outcome,
            detail,
            at: Utc::now(),
        });
        self.calls.len() - 1
    }

    pub(super) fn authorize(&mut self, amount: Money, token: &str) -> Authorization {
        let refusal = if self.void_requested {
            Some("the payment was voided")
        } else if self.authorizations_in_flight > 0 {
            Some("an authorisation of this payment is in flight")
        } else {
            match self.status {
                PaymentStatus::None | PaymentStatus::Declined => None,
                PaymentStatus::Voided => Some("the payment was voided"),
                _ => Some("the payment is already authorised"),
            }
        };
        if let Some(reason) = refusal {
            return Authorization::Now(Answer::conflict(reason));
        }
        let answer = match token {
            "tok_ok" => Answer::done(CallOutcome::Authorized, self.grant(amount)),
            "tok_flaky" if self.flaky_failures < FLAKY_FAILURES => {
                self.flaky_failures += 1;
                let reason = format!(
                    "temporarily unavailable ({} of {FLAKY_FAILURES})",
                    self.flaky_failures
                );
                Answer::refused(StatusCode::SERVICE_UNAVAILABLE, "unavailable", reason)
            }
            "tok_flaky" => Answer::done(CallOutcome::Authorized, self.grant(amount)),
            "tok_slow" | "tok_timeout" => {
                self.authorizations_in_flight += 1;
                return if token == "tok_slow" {
                    Authorization::Slow
                } else {
                    Authorization::Hold
                };
            }
            "tok_decline" => self.decline("card declined"),
            _ => self.decline("unknown token"),
        };
        Authorization::Now(answer)
    }

    fn decline(&mut self, reason: &str) -> Answer {
        self.status = PaymentStatus::Declined;
        Answer::refused(
            StatusCode::PAYMENT_REQUIRED,
            "card_declined",
            reason.to_owned(),
        )
    }

    /// Authorise `amount`: the 200 answer with a fresh authorisation id.
    fn grant(&mut self, amount: Money) -> Reply {
        let authorization_id = format!("auth_{}", Uuid::new_v4().simple());
        self.status = PaymentStatus::Authorized;
        self.authorized = Some(amount);
        self.authorization_id = Some(authorization_id.clone());
        self.successful_authorizations += 1;
        Reply::ok(json!({ "authorization_id": authorization_id, "status": self.status }))
    }

    /// `tok_slow`'s late answer: authorise, and void at once if a void came meanwhile; the
    /// `call` that asked is recorded as authorised.
    pub(super) fn land(&mut self, amount: Money, call: usize) -> Reply {
        self.authorizations_in_flight = self.authorizations_in_flight.saturating_sub(1);
        let reply = self.grant(amount);
        let mut detail = format!("answered after {} s", SLOW_ANSWER.as_secs());
        if self.void_requested {
            self.status = PaymentStatus::Voided;
            detail.push_str(", then voided at once: a void came while it was in flight");
        }
        if let Some(call) = self.calls.get_mut(call) {
            call.outcome = CallOutcome::Authorized;
            call.detail = Some(detail);
        }
        reply
    }

    pub(super) fn capture(&mut self, amount: Money) -> Answer {
        let authorized = match (self.status, self.authorized) {
            (PaymentStatus::Authorized | PaymentStatus::Captured, Some(authorized)) => authorized,
            _ => return Answer::conflict("nothing is authorised to capture"),
        };
        if let Some(refusal) =
            Self::exceeds(amount, authorized, self.captured, "capture", "authorised")
        {
            return refusal;
        }
        self.captured += amount.amount;
        self.status = PaymentStatus::Captured;
        Answer::done(CallOutcome::Captured, self.amounts_reply())
    }

    pub(super) fn refund(&mut self, amount: Money) -> Answer {
        let captured = match (self.status, self.authorized) {
            (PaymentStatus::Captured | PaymentStatus::Refunded, Some(authorized)) => {
                Money::new(self.captured, authorized.currency)
            }
            _ => return Answer::conflict("nothing was captured to refund"),
        };
        if let Some(refusal) = Self::exceeds(amount, captured, self.refunded, "refund", "captured")
        {
            return refusal;
        }
        self.refunded += amount.amount;
        self.status = PaymentStatus::Refunded;
        Answer::done(CallOutcome::Refunded, self.amounts_reply())
    }

    /// A refusal when `amount` does not fit in what is left of `limit` after `used`.
    fn exceeds(amount: Money, limit: Money, used: i64, verb: &str, what: &str) -> Option<Answer> {
        let left = limit.amount - used;
        if amount.currency != limit.currency {
            Some(Answer::conflict(format!(
                "{verb} in {} of a payment in {}",
                amount.currency, limit.currency
            )))
        } else if amount.amount > left {
            Some(Answer::conflict(format!(
                "{verb} of {} exceeds the {left} left of what was {what}",
                amount.amount
            )))
        } else {
            None
        }
    }

    pub(super) fn void(&mut self) -> Answer {
        match self.status {
            PaymentStatus::Authorized => {
                self.void_requested = true;
                self.status = PaymentStatus::Voided;
                Answer::done(CallOutcome::Voided, self.amounts_reply())
            }
            PaymentStatus::None | PaymentStatus::Declined | PaymentStatus::Voided => {
                self.void_requested = true;
                let detail = if self.authorizations_in_flight > 0 {
                    "nothing authorised yet: the authorisation in flight is voided when it lands"
                } else {
                    "nothing authorised"
                };
                Answer {
                    detail: Some(detail.to_owned()),
                    ..Answer::done(CallOutcome::NoOp, self.amounts_reply())
                }
            }
            PaymentStatus::Captured | PaymentStatus::Refunded => {
                Answer::conflict("the payment was captured: refund it instead")
            }
        }
    }

    fn amounts_reply(&self) -> Reply {
        let view = self.view("");
        Reply::ok(json!({
            "status": view.status,
            "authorized_amount": view.authorized_amount,
            "captured_amount": view.captured_amount,
            "refunded_amount": view.refunded_amount,
        }))
    }

    pub(super) fn view(&self, payment_id: &str) -> PaymentView {
        let in_currency = |amount| self.authorized.map(|a| Money::new(amount, a.currency));
        PaymentView {
            payment_id: payment_id.to_owned(),
            status: self.status,
            authorization_id: self.authorization_id.clone(),
            authorized_amount: self.authorized,
            captured_amount: in_currency(self.captured),
            refunded_amount: in_currency(self.refunded),
            successful_authorizations: self.successful_authorizations,
            calls: self.calls.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use commerce_domain::Currency;

    use super::*;

    fn eur(amount: i64) -> Money {
        Money::new(amount, Currency::parse("EUR").unwrap())
    }

    fn status_of(authorization: Authorization) -> StatusCode {
        match authorization {
            Authorization::Now(answer) => answer.reply.status,
            _ => panic!("expected an immediate answer"),
        }
    }

    fn authorized(amount: i64) -> Payment {
        let mut payment = Payment::new(0);
        assert_eq!(
            status_of(payment.authorize(eur(amount), "tok_ok")),
            StatusCode::OK
        );
        payment
    }

    #[test]
    fn flaky_fails_twice_per_payment_then_authorises() {
        let mut payment = Payment::new(0);
        let statuses: Vec<_> = (0..3)
            .map(|_| status_of(payment.authorize(eur(100), "tok_flaky")))
            .collect();
        assert_eq!(
            statuses,
            [
                StatusCode::SERVICE_UNAVAILABLE,
                StatusCode::SERVICE_UNAVAILABLE,
                StatusCode::OK
            ]
        );
        assert_eq!(payment.view("p").successful_authorizations, 1);
        let mut other = Payment::new(1);
        assert_eq!(
            status_of(other.authorize(eur(100), "tok_flaky")),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn a_declined_or_unknown_token_is_402() {
        let mut payment = Payment::new(0);
        assert_eq!(
            status_of(payment.authorize(eur(100), "tok_decline")),
            StatusCode::PAYMENT_REQUIRED
        );
        assert_eq!(
            status_of(payment.authorize(eur(100), "tok_other")),
            StatusCode::PAYMENT_REQUIRED
        );
        assert_eq!(payment.view("p").status, PaymentStatus::Declined);
    }

    #[test]
    fn capture_cannot_exceed_what_is_left_of_the_authorisation() {
        let mut payment = authorized(100);
        assert_eq!(payment.capture(eur(101)).reply.status, StatusCode::CONFLICT);
        assert_eq!(payment.capture(eur(60)).reply.status, StatusCode::OK);
        assert_eq!(payment.capture(eur(41)).reply.status, StatusCode::CONFLICT);
        assert_eq!(payment.view("p").captured_amount, Some(eur(60)));
    }

    #[test]
    fn capture_needs_an_authorisation_in_the_same_currency() {
        assert_eq!(
            Payment::new(0).capture(eur(1)).reply.status,
            StatusCode::CONFLICT
        );
        let usd = Money::new(1, Currency::parse("USD").unwrap());
        assert_eq!(
            authorized(100).capture(usd).reply.status,
            StatusCode::CONFLICT
        );
    }

    #[test]
    fn refund_cannot_exceed_what_was_captured() {
        let mut payment = authorized(100);
        assert_eq!(payment.refund(eur(1)).reply.status, StatusCode::CONFLICT);
        payment.capture(eur(60));
        assert_eq!(payment.refund(eur(61)).reply.status, StatusCode::CONFLICT);
        assert_eq!(payment.refund(eur(60)).reply.status, StatusCode::OK);
        assert_eq!(payment.view("p").status, PaymentStatus::Refunded);
    }

    #[test]
    fn a_void_drops_the_authorisation_and_is_a_no_op_without_one() {
        let mut payment = authorized(100);
        assert_eq!(payment.void().outcome, CallOutcome::Voided);
        assert_eq!(payment.view("p").status, PaymentStatus::Voided);
        assert_eq!(Payment::new(0).void().outcome, CallOutcome::NoOp);
    }

    #[test]
    fn no_authorisation_is_taken_after_a_void() {
        let mut payment = Payment::new(0);
        payment.void();
        assert_eq!(
            status_of(payment.authorize(eur(100), "tok_ok")),
            StatusCode::CONFLICT
        );
        assert_eq!(payment.view("p").successful_authorizations, 0);
    }

    #[test]
    fn a_captured_payment_cannot_be_voided() {
        let mut payment = authorized(100);
        payment.capture(eur(100));
        assert_eq!(payment.void().reply.status, StatusCode::CONFLICT);
    }
}

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use crate::privacy::{Personal, Sealed};
use crate::values::Violations;
use crate::{AccountId, ProductId};

/// Commands on a review.
#[derive(Debug, Clone, PartialEq)]
pub enum ReviewCommand {
    /// Write the review. `delivered` says whether the buyer has a delivered order of the
    /// product, resolved by the caller.
    Write {
        product_id: ProductId,
        buyer_id: AccountId,
        delivered: bool,
        /// The buyer's display name, sealed for them.
        author_name: Sealed,
        rating: u8,
        title: String,
        body: String,
    },
}

/// What happened to a review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum ReviewEvent {
    /// The buyer reviewed the product.
    ReviewWritten {
        product_id: ProductId,
        buyer_id: AccountId,
        /// The name readers see, sealed for the buyer (version 2 on; `None` before).
        author_name: Option<Personal>,
        rating: u8,
        title: String,
        body: String,
    },
}

crate::domain_event!(ReviewEvent for Review { ReviewWritten });

/// Why a review was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    #[error("you have already reviewed this product")]
    AlreadyReviewed,
    #[error("only a buyer whose order of this product was delivered may review it")]
    NotDelivered,
    /// The rating, title or body break a rule (every one that does).
    #[error("{0}")]
    Invalid(Violations),
}

/// The rating, title and body of a review, checked: the title and body trimmed, or every
/// field that breaks a rule.
pub fn checked(rating: u8, title: &str, body: &str) -> Result<(u8, String, String), Violations> {
    let mut violations = Violations::default();
    if !(1..=5).contains(&rating) {
        violations.add(&["rating"], format!("rating must be 1 to 5, not {rating}"));
    }
    let title = title.trim().to_owned();
    if title.is_empty() || title.chars().count() > 200 {
        violations.add(&["title"], "title must be 1 to 200 characters");
    }
    let body = body.trim().to_owned();
    if body.chars().count() > 5000 {
        violations.add(&["body"], "body must be at most 5000 characters");
    }
    violations.or((rating, title, body))
}

/// A written review.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Review {
    pub written: bool,
    pub rating: u8,
}

impl Aggregate for Review {
    const TYPE: &'static str = "review";
    type Command = ReviewCommand;
    type Event = ReviewEvent;
    type Error = ReviewError;
    type Services = ();

    async fn handle(
        &mut self,
        command: ReviewCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), ReviewError> {
        let ReviewCommand::Write {
            product_id,
            buyer_id,
            delivered,
            author_name,
            rating,
            title,
            body,
        } = command;
        if self.written {
            return Err(ReviewError::AlreadyReviewed);
        }
        if !delivered {
            return Err(ReviewError::NotDelivered);
        }
        let (rating, title, body) = checked(rating, &title, &body).map_err(ReviewError::Invalid)?;
        sink.write(
            ReviewEvent::ReviewWritten {
                product_id,
                buyer_id,
                author_name: Some(author_name.into()),
                rating,
                title,
                body,
            },
            self,
        )
        .await;
        Ok(())
    }

    fn apply(&mut self, event: ReviewEvent) {
        let ReviewEvent::ReviewWritten { rating, .. } = event;
        self.written = true;
        self.rating = rating;
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    type ReviewTest = TestFramework<Review>;

    /// The aggregate never opens a sealed value: any ciphertext will do.
    fn author() -> Sealed {
        Sealed {
            sealed_for: uuid::Uuid::from_u128(2),
            ciphertext: "QWRh".into(),
        }
    }

    fn write(delivered: bool, rating: u8) -> ReviewCommand {
        ReviewCommand::Write {
            product_id: ProductId(uuid::Uuid::from_u128(1)),
            buyer_id: AccountId(uuid::Uuid::from_u128(2)),
            delivered,
            author_name: author(),
            rating,
            title: " Great ".into(),
            body: "Would buy again".into(),
        }
    }

    fn written() -> ReviewEvent {
        ReviewEvent::ReviewWritten {
            product_id: ProductId(uuid::Uuid::from_u128(1)),
            buyer_id: AccountId(uuid::Uuid::from_u128(2)),
            author_name: Some(author().into()),
            rating: 5,
            title: "Great".into(),
            body: "Would buy again".into(),
        }
    }

    #[test]
    fn a_buyer_with_a_delivered_order_reviews() {
        ReviewTest::with(())
            .given_no_previous_events()
            .when(write(true, 5))
            .then_expect_events(vec![written()]);
    }

    #[test]
    fn only_after_delivery() {
        ReviewTest::with(())
            .given_no_previous_events()
            .when(write(false, 5))
            .then_expect_error(ReviewError::NotDelivered);
    }

    #[test]
    fn one_review_per_buyer_and_product() {
        ReviewTest::with(())
            .given(vec![written()])
            .when(write(true, 4))
            .then_expect_error(ReviewError::AlreadyReviewed);
    }

    fn refused_fields(command: ReviewCommand) -> Vec<String> {
        match ReviewTest::with(())
            .given_no_previous_events()
            .when(command)
            .inspect_result()
        {
            Err(ReviewError::Invalid(violations)) => {
                violations.iter().map(|v| v.path.join("/")).collect()
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_rating_is_one_to_five() {
        assert_eq!(refused_fields(write(true, 0)), ["rating"]);
        assert_eq!(refused_fields(write(true, 6)), ["rating"]);
    }

    #[test]
    fn every_bad_field_is_refused_at_once() {
        let ReviewCommand::Write {
            product_id,
            buyer_id,
            author_name,
            ..
        } = write(true, 5);
        let command = ReviewCommand::Write {
            product_id,
            buyer_id,
            delivered: true,
            author_name,
            rating: 9,
            title: "  ".into(),
            body: "x".repeat(5001),
        };
        assert_eq!(refused_fields(command), ["rating", "title", "body"]);
    }
}

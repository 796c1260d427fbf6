//! Each domain refusal as an HTTP problem: 404 for what does not exist, 409 for a state that
//! forbids the step, 422 for input that breaks a rule. A 422 about a field of the request names
//! it in `errors[]` (a JSON pointer each): the refusals that carry their fields (`Violations`)
//! list every one, and those about one field point at it.

use commerce_domain::account::AccountError;
use commerce_domain::cart::CartError;
use commerce_domain::inventory::InventoryError;
use commerce_domain::order::OrderError;
use commerce_domain::product::ProductError;
use commerce_domain::review::ReviewError;
use commerce_http::problem::FieldError;
use commerce_http::ApiError;
use commerce_store::keys::SealError;
use commerce_store::CommandError;

/// A domain error's HTTP face.
pub(crate) trait Refusal: std::error::Error {
    fn to_api_error(&self) -> ApiError;
}

impl Refusal for CartError {
    fn to_api_error(&self) -> ApiError {
        match self {
            CartError::UnknownSku(_) | CartError::NotInCart(_) | CartError::NotInWishlist(_) => {
                ApiError::not_found(self.to_string())
            }
            CartError::LineUnavailable(_) => ApiError::conflict(self.to_string()),
            CartError::QuantityTooLarge => ApiError::invalid_field("/quantity", self.to_string()),
            // Refused for the SKU of the path (`PUT /v1/me/cart/items/{sku}`, the wishlist's).
            CartError::NotListed(_) | CartError::VariantsOnly(_) => {
                ApiError::with_field(FieldError::path("sku", self.to_string()))
            }
            _ => ApiError::unprocessable(self.to_string()),
        }
    }
}

impl Refusal for OrderError {
    fn to_api_error(&self) -> ApiError {
        match self {
            OrderError::NotPlaced => ApiError::not_found(self.to_string()),
            OrderError::AlreadyPlaced
            | OrderError::InvalidTransition { .. }
            | OrderError::ReturnWindowClosed => ApiError::conflict(self.to_string()),
            _ => ApiError::unprocessable(self.to_string()),
        }
    }
}

impl Refusal for InventoryError {
    fn to_api_error(&self) -> ApiError {
        match self {
            InventoryError::OutOfStock { .. }
            | InventoryError::BelowReserved { .. }
            | InventoryError::NothingCommitted => ApiError::conflict(self.to_string()),
            InventoryError::NonPositiveQuantity => {
                ApiError::invalid_field("/quantity", self.to_string())
            }
            InventoryError::ZeroDelta => ApiError::invalid_field("/delta", self.to_string()),
            InventoryError::MissingReason => ApiError::invalid_field("/reason", self.to_string()),
            _ => ApiError::unprocessable(self.to_string()),
        }
    }
}

impl Refusal for ProductError {
    fn to_api_error(&self) -> ApiError {
        match self {
            ProductError::NotFound => ApiError::not_found(self.to_string()),
            ProductError::NotOwner => ApiError::forbidden(self.to_string()),
            ProductError::AlreadyCreated | ProductError::Delisted => {
                ApiError::conflict(self.to_string())
            }
            ProductError::Invalid(violations) => ApiError::violations(violations.clone()),
            // The body as a whole: it changes nothing.
            ProductError::NoChanges => ApiError::invalid_field("", self.to_string()),
        }
    }
}

impl Refusal for AccountError {
    fn to_api_error(&self) -> ApiError {
        match self {
            AccountError::AlreadyRegistered => ApiError::conflict(self.to_string()),
            AccountError::NotRegistered => ApiError::not_found(self.to_string()),
            AccountError::InvalidName => ApiError::invalid_field("/name", self.to_string()),
        }
    }
}

impl Refusal for ReviewError {
    fn to_api_error(&self) -> ApiError {
        match self {
            ReviewError::AlreadyReviewed => ApiError::conflict(self.to_string()),
            ReviewError::NotDelivered => ApiError::forbidden(self.to_string()),
            ReviewError::Invalid(violations) => ApiError::violations(violations.clone()),
        }
    }
}

/// Sealing refused for a forgotten person: their tokens are refused before any command gets
/// here, so this is a token that raced the forget.
pub(crate) fn seal_error(error: SealError) -> ApiError {
    match error {
        SealError::Forgotten(_) => ApiError::unauthorized("this account was forgotten"),
        SealError::Store(e) => ApiError::internal(e),
    }
}

pub(crate) fn command_error<E: Refusal>(error: CommandError<E>) -> ApiError {
    match error {
        CommandError::Rejected(e) => e.to_api_error(),
        CommandError::VersionMismatch { current } => ApiError::precondition_failed(current),
        CommandError::Conflict => {
            ApiError::conflict("too many concurrent changes to this resource; retry")
        }
        CommandError::ClaimTaken(claim) => ApiError::conflict(format!("{claim} is already taken")),
        CommandError::DuplicateRequest => {
            ApiError::conflict("a request with this Idempotency-Key is being processed; retry")
        }
        CommandError::TooLarge { limit, .. } => ApiError::payload_too_large(format!(
            "an event this command would record exceeds the {limit}-byte limit of the event bus"
        )),
        // The change opened beside a command (the order a checkout places) refused its input.
        CommandError::CompanionRefused(why) => ApiError::unprocessable(why),
        CommandError::Fenced(e) => ApiError::internal(anyhow::anyhow!("fenced off: {e}")),
        CommandError::Infrastructure(e) => ApiError::internal(e),
    }
}

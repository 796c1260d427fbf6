use crate::Sku;

/// Why a cart command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CartError {
    #[error("SKU {0} does not exist")]
    UnknownSku(Sku),
    #[error("SKU {0} is not listed for sale")]
    NotListed(Sku),
    #[error(
        "SKU {0} is a product with variants and has no stock of its own; add one of its variants"
    )]
    VariantsOnly(Sku),
    #[error("a cart line holds at most {max} units", max = super::MAX_LINE_QUANTITY)]
    QuantityTooLarge,
    #[error("a cart holds at most {max} different SKUs", max = super::MAX_LINES)]
    TooManyLines,
    #[error("SKU {0} is priced in another currency than the rest of the cart")]
    CurrencyMismatch(Sku),
    #[error("SKU {0} is not in the cart")]
    NotInCart(Sku),
    #[error("SKU {0} is not in the wishlist")]
    NotInWishlist(Sku),
    #[error("the cart is empty")]
    EmptyCart,
    #[error("SKU {0} in the cart is no longer for sale; remove it and check out again")]
    LineUnavailable(Sku),
    #[error("the order total does not fit in a money amount")]
    TotalOverflow,
}

use super::{ProductChanges, ProductDraft};
use crate::AccountId;

/// Commands a seller sends about their product.
#[derive(Debug, Clone, PartialEq)]
pub enum ProductCommand {
    /// Put a new product on sale. Its SKUs must have been claimed for it beforehand.
    Create {
        seller_id: AccountId,
        draft: ProductDraft,
    },
    /// Change some fields.
    Update {
        by: AccountId,
        changes: ProductChanges,
    },
    /// Take the product off sale; its history stays.
    Delist { by: AccountId },
}

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
    /// Change some fields and, with `listed`, put the product back on sale (`true`) or take it
    /// off (`false`). Only a listed product's fields change, so relisting comes first.
    Update {
        by: AccountId,
        changes: ProductChanges,
        listed: Option<bool>,
    },
    /// Take the product off sale; its history stays.
    Delist { by: AccountId },
}

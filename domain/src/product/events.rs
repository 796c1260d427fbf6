use serde::{Deserialize, Serialize};

use super::{ProductChanges, ProductDraft};
use crate::AccountId;

/// What happened to a product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum ProductEvent {
    /// A seller put a product on sale.
    ProductCreated {
        seller_id: AccountId,
        product: ProductDraft,
    },
    /// Some fields changed; absent ones did not.
    ProductUpdated { changes: ProductChanges },
    /// The product was taken off sale.
    ProductDelisted,
    /// A delisted product was put back on sale by its seller.
    ProductRelisted,
}

crate::domain_event!(ProductEvent for crate::product::Product {
    ProductCreated,
    ProductUpdated,
    ProductDelisted,
    ProductRelisted
});

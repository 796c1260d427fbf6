//! What the catalog says of a SKU, read from the write side: the SKU's claim names its product
//! (cached: claims never change), whose aggregate gives the price and whether it is listed
//! (checked against the store, as another process may have changed it). A product's own SKU,
//! when the product has variants, is sold as such only while it has stock of its own.

use commerce_domain::cart::CatalogItem;
use commerce_domain::Sku;

use crate::CommandState;

/// The catalog entry of `sku`, or `None` for a SKU no product sells.
pub(crate) async fn catalog_item(
    state: &CommandState,
    sku: &Sku,
) -> anyhow::Result<Option<CatalogItem>> {
    let Some(owner) = state.sku_owners.get(sku).await? else {
        return Ok(None);
    };
    let product = state
        .products
        .load_latest(&owner.product_id.to_string())
        .await?
        .state;
    let Some(unit_price) = product.price_of(sku) else {
        return Ok(None);
    };
    let parent_of_variants = product
        .details
        .as_ref()
        .is_some_and(|d| d.sku == *sku && !d.variants.is_empty());
    let variants_only = parent_of_variants
        && state
            .inventory
            .load_latest(sku.as_str())
            .await?
            .state
            .levels
            .on_hand
            <= 0;
    Ok(Some(CatalogItem {
        sku: sku.clone(),
        product_id: owner.product_id,
        seller_id: owner.seller_id,
        unit_price,
        listed: product.listed,
        variants_only,
    }))
}

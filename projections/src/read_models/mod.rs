//! The read models, one projection a file. Each owns its `rm_*` tables (see the read-model
//! migration), applies events inside the runtime's transaction, and relies on the runtime for
//! ordering per aggregate, duplicates and gaps. The busiest (carts, orders, inventory,
//! recommendations) fold a whole batch in memory and write it in a statement or two per table.

mod accounts;
mod carts;
mod catalog;
mod inventory;
mod notifications;
mod orders;
mod payments;
mod recommendations;
mod reviews;

pub use accounts::Accounts;
pub use carts::Carts;
pub use catalog::Catalog;
pub use inventory::InventoryLevels;
pub use notifications::Notifications;
pub use orders::Orders;
pub use payments::Payments;
pub use recommendations::Recommendations;
pub use reviews::Reviews;

use crate::SharedProjection;

/// Every read model the engine serves.
pub fn all() -> Vec<SharedProjection> {
    vec![
        SharedProjection::new(Carts),
        SharedProjection::new(Orders),
        SharedProjection::new(InventoryLevels),
        SharedProjection::new(Catalog),
        SharedProjection::new(Reviews),
        SharedProjection::new(Payments),
        SharedProjection::new(Notifications),
        SharedProjection::new(Recommendations),
        SharedProjection::new(Accounts),
    ]
}

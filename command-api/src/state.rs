use std::sync::Arc;

use axum::extract::FromRef;
use commerce_domain::account::Account;
use commerce_domain::cart::Cart;
use commerce_domain::inventory::Inventory;
use commerce_domain::order::Order;
use commerce_domain::product::Product;
use commerce_domain::review::Review;
use commerce_http::JwtKeys;
use commerce_store::claims::SkuOwners;
use commerce_store::throttle::{SignInThrottle, ThrottleConfig};
use commerce_store::Repository;
use sqlx::PgPool;

/// What the command handlers share: the pool, the token keys and one repository per aggregate.
#[derive(Clone)]
pub struct CommandState {
    inner: Arc<Inner>,
}

/// The parts of the command state.
pub struct Inner {
    pub pool: PgPool,
    pub jwt: JwtKeys,
    pub accounts: Repository<Account>,
    pub products: Repository<Product>,
    pub inventory: Repository<Inventory>,
    pub carts: Repository<Cart>,
    pub orders: Repository<Order>,
    pub reviews: Repository<Review>,
    pub sku_owners: SkuOwners,
    /// Failed sign-ins (and password changes) per IP and per IP and account.
    pub sign_in_throttle: SignInThrottle,
}

impl CommandState {
    pub fn new(pool: PgPool, jwt: JwtKeys, throttle: ThrottleConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                accounts: Repository::new(pool.clone()),
                products: Repository::new(pool.clone()),
                inventory: Repository::new(pool.clone()),
                carts: Repository::new(pool.clone()),
                orders: Repository::new(pool.clone()),
                reviews: Repository::new(pool.clone()),
                sku_owners: SkuOwners::new(pool.clone()),
                sign_in_throttle: SignInThrottle::new(pool.clone(), throttle),
                pool,
                jwt,
            }),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The order repository, for the saga that drives orders on.
    pub fn orders(&self) -> &Repository<Order> {
        &self.inner.orders
    }

    /// The inventory repository.
    pub fn inventory(&self) -> &Repository<Inventory> {
        &self.inner.inventory
    }
}

impl std::ops::Deref for CommandState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl FromRef<CommandState> for JwtKeys {
    fn from_ref(state: &CommandState) -> Self {
        state.inner.jwt.clone()
    }
}

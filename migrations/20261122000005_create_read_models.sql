-- Read models: tables built only by projections from the event stream, and read only by the
-- query API. Each projection owns its tables; any of them can be dropped and rebuilt from events.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- carts: the buyer's open cart and wishlist, as one document.
CREATE TABLE rm_carts (
    buyer_id   uuid        PRIMARY KEY,
    state      jsonb       NOT NULL,  -- the folded cart, to apply the next event to
    items      jsonb       NOT NULL DEFAULT '[]',
    total      jsonb,
    wishlist   jsonb       NOT NULL DEFAULT '[]',
    updated_at timestamptz NOT NULL
);

-- orders: every order with its timeline; also the purchase history and the sellers' queue.
CREATE TABLE rm_orders (
    order_id            uuid        PRIMARY KEY,
    buyer_id            uuid        NOT NULL,
    seller_ids          uuid[]      NOT NULL,
    status              text        NOT NULL,
    lines               jsonb       NOT NULL,
    total               jsonb       NOT NULL,
    shipping_address    jsonb       NOT NULL,
    timeline            jsonb       NOT NULL DEFAULT '[]',
    cancellation_reason text,
    shipment            jsonb,
    placed_at           timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL
);
CREATE INDEX rm_orders_buyer ON rm_orders (buyer_id, placed_at DESC, order_id DESC);
CREATE INDEX rm_orders_sellers ON rm_orders USING gin (seller_ids);

-- inventory: stock levels per SKU.
CREATE TABLE rm_inventory (
    sku        text        PRIMARY KEY,
    on_hand    bigint      NOT NULL,
    reserved   bigint      NOT NULL,
    updated_at timestamptz NOT NULL
);

-- catalog: products with variants and free-form attributes, searchable by weighted full text
-- (name over description) and by trigram similarity (typos).
CREATE TABLE rm_products (
    product_id   uuid        PRIMARY KEY,
    seller_id    uuid        NOT NULL,
    sku          text        NOT NULL,
    name         text        NOT NULL,
    description  text        NOT NULL,
    price_amount bigint      NOT NULL,
    currency     text        NOT NULL,
    category     text        NOT NULL,
    attributes   jsonb       NOT NULL,
    variants     jsonb       NOT NULL,
    listed       boolean     NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    search       tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', name), 'A') || setweight(to_tsvector('english', description), 'B')
    ) STORED
);
CREATE INDEX rm_products_search ON rm_products USING gin (search);
CREATE INDEX rm_products_name_trgm ON rm_products USING gin (name gin_trgm_ops);
CREATE INDEX rm_products_category ON rm_products (category text_pattern_ops);
CREATE INDEX rm_products_price ON rm_products (price_amount, product_id);
CREATE INDEX rm_products_attributes ON rm_products USING gin (attributes jsonb_path_ops);

-- reviews, newest first, and each product's rating summary.
CREATE TABLE rm_reviews (
    product_id uuid        NOT NULL,
    buyer_id   uuid        NOT NULL,
    rating     smallint    NOT NULL,
    title      text        NOT NULL,
    body       text        NOT NULL,
    written_at timestamptz NOT NULL,
    PRIMARY KEY (product_id, buyer_id)
);
CREATE INDEX rm_reviews_newest ON rm_reviews (product_id, written_at DESC, buyer_id);
CREATE TABLE rm_rating_summaries (
    product_id   uuid   PRIMARY KEY,
    review_count bigint NOT NULL,
    rating_sum   bigint NOT NULL
);

-- payments: each order's payment and its history.
CREATE TABLE rm_payments (
    payment_id uuid        PRIMARY KEY,
    order_id   uuid        NOT NULL UNIQUE,
    status     text        NOT NULL,
    amount     jsonb       NOT NULL,
    history    jsonb       NOT NULL DEFAULT '[]',
    updated_at timestamptz NOT NULL
);

-- notifications: one row per buyer-visible event.
CREATE TABLE rm_notifications (
    notification_id bigserial   PRIMARY KEY,
    account_id      uuid        NOT NULL,
    kind            text        NOT NULL,
    order_id        uuid,
    message         text        NOT NULL,
    created_at      timestamptz NOT NULL,
    event_position  bigint      NOT NULL,
    UNIQUE (account_id, event_position, kind)
);
CREATE INDEX rm_notifications_newest ON rm_notifications (account_id, notification_id DESC);
-- Who to tell about an order's later events.
CREATE TABLE rm_notification_orders (
    order_id   uuid   PRIMARY KEY,
    buyer_id   uuid   NOT NULL,
    seller_ids uuid[] NOT NULL
);
CREATE TABLE rm_notification_payments (
    payment_id uuid PRIMARY KEY,
    order_id   uuid NOT NULL
);

-- popularity: units ordered per product, and products bought together, for recommendations.
CREATE TABLE rm_product_popularity (
    product_id   uuid        PRIMARY KEY,
    units        bigint      NOT NULL,
    orders       bigint      NOT NULL,
    last_ordered timestamptz NOT NULL
);
CREATE TABLE rm_bought_together (
    product_id uuid   NOT NULL,
    other_id   uuid   NOT NULL,
    orders     bigint NOT NULL,
    PRIMARY KEY (product_id, other_id)
);
CREATE TABLE rm_buyer_products (
    buyer_id   uuid        NOT NULL,
    product_id uuid        NOT NULL,
    source     text        NOT NULL,  -- 'bought' or 'carted'
    at         timestamptz NOT NULL,
    PRIMARY KEY (buyer_id, product_id, source)
);

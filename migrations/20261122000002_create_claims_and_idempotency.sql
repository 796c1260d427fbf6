-- Uniqueness the events table cannot express (its only unique key is the concurrency check).
-- Claims are written in the same transaction as the events that need them, so a claim exists
-- exactly when its aggregate does.
CREATE TABLE email_claims (
    email      text        PRIMARY KEY,
    account_id uuid        NOT NULL UNIQUE,
    claimed_at timestamptz NOT NULL DEFAULT now()
);

-- A SKU belongs to one product of one seller; this also answers "who owns this SKU".
CREATE TABLE sku_claims (
    sku        text        PRIMARY KEY,
    product_id uuid        NOT NULL,
    seller_id  uuid        NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sku_claims_product ON sku_claims (product_id);

-- The first response to a command sent with an `Idempotency-Key`, written in the command's
-- transaction: a retry with the same key and body gets it back and appends nothing.
CREATE TABLE idempotency_keys (
    scope         text        NOT NULL,  -- who sent it: the actor's id, or "anonymous"
    key           text        NOT NULL,
    request_hash  bytea       NOT NULL,  -- SHA-256 of method, path and body
    status        smallint    NOT NULL,
    body          jsonb,
    location      text,
    etag          bigint,
    position      bigint,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);

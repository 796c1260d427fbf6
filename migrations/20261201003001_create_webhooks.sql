-- Outbound webhooks (see the `commerce-webhooks` crate).

-- Subscriptions. A webhook receives the events of its types recorded from its creation on
-- (earlier ones by replay). Its secret signs deliveries; after a rotation the previous one
-- signs too until `previous_key_until`, so receivers switch without a gap.
CREATE TABLE webhooks (
    webhook_id           uuid        PRIMARY KEY,
    owner_id             uuid        NOT NULL,
    -- A seller's webhook sees only events about its own products, SKUs and order lines.
    owner_role           text        NOT NULL CHECK (owner_role IN ('admin', 'seller')),
    url                  text        NOT NULL,
    event_types          text[]      NOT NULL,
    signing_key          bytea       NOT NULL,
    previous_key         bytea,
    previous_key_until   timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    deleted_at           timestamptz,
    -- The circuit breaker: consecutive failed attempts, and while open, when it half-opens.
    consecutive_failures integer     NOT NULL DEFAULT 0,
    circuit_open_until   timestamptz
);

CREATE INDEX webhooks_by_owner ON webhooks (owner_id, created_at, webhook_id) WHERE deleted_at IS NULL;

-- One row per event to deliver to one webhook; its `delivery_id` orders the deliveries of one
-- aggregate: a delivery is attempted only when no earlier one of its webhook and aggregate is
-- still pending. `message_id` (the `webhook-id` header) is the same for every delivery of
-- the same event to the same webhook, replays included, so receivers dedupe.
CREATE TABLE webhook_deliveries (
    delivery_id     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id      uuid        NOT NULL REFERENCES webhooks ON DELETE CASCADE,
    message_id      text        NOT NULL,
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    sequence        bigint      NOT NULL,
    position        bigint      NOT NULL,
    event_type      text        NOT NULL,
    state           text        NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'failed', 'cancelled')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- A worker holds a delivery it is attempting until then; a crashed worker's comes back.
    leased_until    timestamptz,
    -- The retry window: retried until `retry_for` after it opened (when the delivery was
    -- enqueued, or redelivered by hand); the backoff doubles with the attempts made in it.
    window_opened_at    timestamptz NOT NULL DEFAULT now(),
    attempts_before_window integer  NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (webhook_id, aggregate_type, aggregate_id, delivery_id)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (webhook_id, delivery_id);
-- A webhook's oldest pending delivery (the half-open circuit's probe), its attempts in flight.
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (webhook_id, delivery_id) WHERE state = 'pending';
-- What the log's retention prunes.
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (finished_at) WHERE state <> 'pending';

-- The delivery log: every attempt.
CREATE TABLE webhook_attempts (
    delivery_id      bigint      NOT NULL REFERENCES webhook_deliveries ON DELETE CASCADE,
    attempt          integer     NOT NULL,
    attempted_at     timestamptz NOT NULL,
    -- The receiver's status; absent when no answer came (refused, timed out, unreachable).
    status           integer,
    latency_ms       integer     NOT NULL,
    error            text,
    response_excerpt text,
    PRIMARY KEY (delivery_id, attempt)
);

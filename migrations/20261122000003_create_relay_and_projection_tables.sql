-- The read side's bookkeeping: how far the relay has published the event store to JetStream,
-- how far each projection has applied it, and the events a projection gave up on.
--
-- Transaction ids are stored as xid8 (comparable with `events.tx_id`). A "horizon" H means: every
-- event whose `tx_id < H` has been handled. A transaction's events become visible together and,
-- for any transaction that committed before another one started, its tx_id is the smaller one;
-- so "the horizon passed the tx_id of the event at position P" is what read-your-writes needs.

-- One row per namespace (one JetStream stream each): the relay's progress in commit order.
CREATE TABLE relay_checkpoint (
    namespace          text        PRIMARY KEY,
    -- The last event published, in the relay's `(tx_id, position)` reading order.
    tx_id              xid8        NOT NULL DEFAULT '0',
    position           bigint      NOT NULL DEFAULT 0,
    -- Every event with `tx_id < horizon` has been published and acknowledged by JetStream.
    horizon            xid8        NOT NULL DEFAULT '0',
    -- The stream sequence of the last message acknowledged: every event published so far is at
    -- or below it in the stream. Projections compare it with their consumer's ack floor.
    stream_sequence    bigint      NOT NULL DEFAULT 0,
    -- The highest global position published (for operators; positions are not commit order).
    published_position bigint      NOT NULL DEFAULT 0,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- One row per projection: what it has applied and how far behind it is.
CREATE TABLE projection_positions (
    name            text             PRIMARY KEY,
    -- The highest global position applied so far (a progress indicator, not a watermark).
    position        bigint           NOT NULL DEFAULT 0,
    -- The watermark: every event with `tx_id < horizon` that this projection subscribes to has
    -- been applied (or parked). `wait_for_position` compares it with an event's tx_id.
    horizon         xid8             NOT NULL DEFAULT '0',
    last_applied_at timestamptz,
    -- `recorded_at` of the last event applied.
    last_event_at   timestamptz,
    -- now − recorded_at of the last event applied, when it was applied; 0 once caught up.
    lag_seconds     double precision NOT NULL DEFAULT 0,
    -- Messages the consumer has not delivered or not yet seen acknowledged, at the last check.
    pending         bigint           NOT NULL DEFAULT 0,
    state           text             NOT NULL DEFAULT 'starting'
                    CHECK (state IN ('starting', 'running', 'failing', 'stopped')),
    last_error      text,
    updated_at      timestamptz      NOT NULL DEFAULT now()
);

-- The last sequence of each aggregate a projection applied, written in the transaction that
-- applies it: a lower or equal sequence is a duplicate, a higher one than next is a gap to heal.
CREATE TABLE projection_sequences (
    projection     text   NOT NULL,
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    last_sequence  bigint NOT NULL,
    PRIMARY KEY (projection, aggregate_type, aggregate_id)
);

-- Events a projection failed to apply after its retries, parked so that it could move on.
-- The event's sequence counts as applied; an operator fixes the cause and retries the event.
CREATE TABLE dead_letters (
    id             bigserial   PRIMARY KEY,
    projection     text        NOT NULL,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    sequence       bigint      NOT NULL,
    position       bigint      NOT NULL,
    event_type     text        NOT NULL,
    event_version  text        NOT NULL,
    payload        jsonb       NOT NULL,
    metadata       jsonb       NOT NULL,
    recorded_at    timestamptz NOT NULL,
    -- The last failure, with its chain of causes.
    error          text        NOT NULL,
    attempts       integer     NOT NULL,
    parked_at      timestamptz NOT NULL DEFAULT now(),
    -- Set when a retry applied the event; NULL while it is still parked.
    retried_at     timestamptz,
    UNIQUE (projection, aggregate_type, aggregate_id, sequence)
);

-- Operators list what is still parked, per projection.
CREATE INDEX dead_letters_parked ON dead_letters (projection, id) WHERE retried_at IS NULL;

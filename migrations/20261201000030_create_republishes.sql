-- Operators' republishes (see `commerce_projections::republish`): the event store published again
-- to JetStream from a position, exactly as the relay publishes it (same `Nats-Msg-Id`s, so
-- JetStream drops what is still in its duplicate window and projections skip the rest by their
-- per-aggregate sequences). One row each, with its progress.
CREATE TABLE republishes (
    republish_id    uuid        PRIMARY KEY,
    namespace       text        NOT NULL,
    from_position   bigint      NOT NULL CHECK (from_position >= 1),
    -- Only events of transactions below this horizon (xid8, as a number) are republished: they
    -- had all committed or aborted when it began. Later ones are the relay's.
    horizon         bigint      NOT NULL,
    state           text        NOT NULL DEFAULT 'running'
                    CHECK (state IN ('running', 'completed', 'failed')),
    -- The last event published, in commit order `(tx_id, position)`.
    cursor_tx       bigint      NOT NULL DEFAULT 0,
    cursor_position bigint      NOT NULL DEFAULT 0,
    events_done     bigint      NOT NULL DEFAULT 0,
    events_total    bigint      NOT NULL,
    error           text,
    started_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);

CREATE INDEX republishes_newest ON republishes (started_at DESC, republish_id);

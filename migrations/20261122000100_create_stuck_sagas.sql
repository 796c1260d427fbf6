-- Sagas a parked event left stuck. When a projection that drives sagas (the saga trigger) parks
-- an event in `dead_letters`, the saga that event would have started or woken is recorded here,
-- in the same transaction: nothing else would ever wake it, so operators must see it. A retry
-- that applies the dead letter removes the row. A saga already stuck keeps its first cause.
CREATE TABLE stuck_sagas (
    saga_id        uuid        PRIMARY KEY,
    -- The projection that parked the event.
    projection     text        NOT NULL,
    dead_letter_id bigint      NOT NULL REFERENCES dead_letters (id),
    -- The parked event's error.
    reason         text        NOT NULL,
    stuck_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX stuck_sagas_dead_letter ON stuck_sagas (dead_letter_id);

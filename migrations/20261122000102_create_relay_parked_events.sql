-- Events the relay could not publish at all and skipped, so that one event cannot stall every
-- later one: today, an event larger than the bus's maximum message size (NATS `max_payload`).
-- The event stays in `events`; projections following its aggregate still get it, read from the
-- store when they heal the gap it leaves. Operators see here what the stream lacks and why.
CREATE TABLE relay_parked_events (
    namespace      text        NOT NULL,
    position       bigint      NOT NULL,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    sequence       bigint      NOT NULL,
    event_type     text        NOT NULL,
    reason         text        NOT NULL,
    parked_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, position)
);

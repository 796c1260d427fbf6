-- When each checkout saga needs a worker next: woken by its order's events (placed, cancelled,
-- returned), by its payment deadline, or when the worker driving it stopped renewing its lease.
-- Workers claim due rows with FOR UPDATE SKIP LOCKED, so several share the load and a crashed
-- worker's sagas are taken up once its lease (`locked_until`) lapses.
CREATE TABLE saga_deadlines (
    saga_id      uuid        PRIMARY KEY,
    due_at       timestamptz NOT NULL,
    reason       text        NOT NULL,  -- 'order_placed', 'order_cancelled', 'payment_timeout', 'retry', …
    generation   bigint      NOT NULL DEFAULT 1,  -- bumped by every wake-up, so none is lost
    locked_by    text,
    locked_until timestamptz,
    attempts     integer     NOT NULL DEFAULT 0
);
CREATE INDEX saga_deadlines_due ON saga_deadlines (due_at);

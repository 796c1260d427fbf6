-- Operators' rebuilds of a projection (see `commerce_projections::rebuild`): one row each, with
-- the checkpoint a killed rebuild resumes from.
CREATE TABLE projection_rebuilds (
    rebuild_id        uuid             PRIMARY KEY,
    projection        text             NOT NULL,
    state             text             NOT NULL DEFAULT 'pending'
                      CHECK (state IN ('pending', 'bulk', 'catching_up', 'swapping',
                                       'completed', 'failed', 'cancelled')),
    cancel_requested  boolean          NOT NULL DEFAULT false,
    -- The bulk phase reads every event with `tx_id < bulk_horizon` (xid8, as a number): all of
    -- them had committed or aborted when the rebuild began, so none can appear behind the cursor.
    bulk_horizon      bigint,
    -- When Postgres had started as the shadow tables were made: they are unlogged until the bulk
    -- phase ends, and a Postgres restart empties unlogged tables, so the bulk phase starts over.
    postgres_started_at timestamptz,
    -- The last event applied to the shadow tables, in commit order `(tx_id, position)`.
    cursor_tx         bigint           NOT NULL DEFAULT 0,
    cursor_position   bigint           NOT NULL DEFAULT 0,
    events_done       bigint           NOT NULL DEFAULT 0,
    events_total      bigint           NOT NULL DEFAULT 0,
    events_per_second double precision NOT NULL DEFAULT 0,
    events_parked     bigint           NOT NULL DEFAULT 0,
    -- Taken anew by every process that claims the rebuild; a write with an older one is refused,
    -- so a process that lost the rebuild never writes again.
    fence             bigint           NOT NULL DEFAULT 0,
    -- How many times a later process took over from a checkpoint.
    resumes           integer          NOT NULL DEFAULT 0,
    error             text,
    requested_at      timestamptz      NOT NULL DEFAULT now(),
    -- When the current run (the first, or a resumption) began, and where: for its rate.
    run_started_at    timestamptz,
    run_events_start  bigint           NOT NULL DEFAULT 0,
    updated_at        timestamptz      NOT NULL DEFAULT now(),
    finished_at       timestamptz
);

-- One rebuild at a time per projection.
CREATE UNIQUE INDEX projection_rebuilds_one_at_a_time ON projection_rebuilds (projection)
    WHERE state IN ('pending', 'bulk', 'catching_up', 'swapping');
CREATE INDEX projection_rebuilds_newest ON projection_rebuilds (requested_at DESC, rebuild_id);

CREATE SEQUENCE projection_rebuild_fences;

-- A fencing token for saga leases: bumped by every claim, and checked inside the transaction of
-- every step a worker commits (and by its renewal, release and finish). A worker that stalled
-- past its lease (paused, or waiting on a dead connection) finds the token moved on and writes
-- nothing. `generation` keeps counting wake-ups, so a wake-up during a run is not lost.
ALTER TABLE saga_deadlines ADD COLUMN fence bigint NOT NULL DEFAULT 0;

-- A fencing token for saga leases, taken from a sequence by every claim (so it never repeats,
-- even when a finished saga's row is deleted and later created again), and checked inside the
-- transaction of every step a worker commits (and by its renewal, release and finish). A worker
-- that stalled past its lease (paused, or waiting on a dead connection) finds the token moved on
-- and writes nothing. `generation` keeps counting wake-ups, so a wake-up during a run is not lost.
CREATE SEQUENCE saga_lease_fences;
ALTER TABLE saga_deadlines ADD COLUMN fence bigint NOT NULL DEFAULT 0;

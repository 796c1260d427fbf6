-- Partitioned projections (COMMERCE_PROJECTION_PARTITIONS): each partition's own watermark.
-- The projection's horizon in projection_positions, which read-your-writes waits on, moves to
-- the lowest of its partitions' once all of them have one. Rows of another partition count
-- (a deployment that changed it) are left and ignored.
CREATE TABLE projection_partitions (
    projection text        NOT NULL,
    partitions integer     NOT NULL CHECK (partitions > 1),
    partition  integer     NOT NULL CHECK (partition >= 0 AND partition < partitions),
    -- Every event of this partition with `tx_id < horizon` has been applied (or parked).
    horizon    xid8        NOT NULL DEFAULT '0',
    -- Messages its consumer had not delivered or not seen acknowledged, at the last check.
    pending    bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, partitions, partition)
);

-- Which stream the relay's checkpoint speaks of. JetStream is derived data: its stream can be
-- deleted and recreated (or lose its unsynced tail) while the relay runs, and stream sequences
-- of one stream mean nothing in another. The relay compares the stream's creation time (from
-- stream info, microseconds) with this one on every batch and republishes from the start of the
-- event store when they differ; projections only trust a checkpoint of the stream their
-- consumer reads. NULL for a checkpoint stored before this column existed.
ALTER TABLE relay_checkpoint ADD COLUMN stream_created timestamptz;

-- Each aggregate type's events in commit order: a rebuild reads its projection's types only
-- (see `commerce_projections::rebuild`). Through `events_commit_order`, shared by every type,
-- a rebuild of the orders fetched every product event from the heap only to skip it. Appends
-- go to the right edge of their type's range, as they do in `events_commit_order`.
CREATE INDEX events_type_commit_order ON events (aggregate_type, tx_id, position);

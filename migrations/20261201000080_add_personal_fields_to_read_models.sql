-- Personal values the read models show, kept as the events hold them (sealed for their person,
-- see domain::privacy) and opened only when a response is built: forgetting a person makes
-- every row of theirs read "forgotten" at once, in every read model and after any rebuild.
ALTER TABLE rm_reviews ADD COLUMN author_name jsonb;
ALTER TABLE rm_notification_orders ADD COLUMN ship_to jsonb;
ALTER TABLE rm_notifications ADD COLUMN ship_to jsonb;
-- Reviews are paged by the position of the event that wrote them, not by the reviewer's id: a
-- cursor is only base64, and one holding the id would show it to anyone who decodes it.
ALTER TABLE rm_reviews ADD COLUMN written_position bigint;
UPDATE rm_reviews r SET written_position = e.position
FROM events e
WHERE e.aggregate_type = 'review' AND e.event_type = 'ReviewWritten'
  AND e.payload -> 'ReviewWritten' ->> 'product_id' = r.product_id::text
  AND e.payload -> 'ReviewWritten' ->> 'buyer_id' = r.buyer_id::text;
ALTER TABLE rm_reviews ALTER COLUMN written_position SET NOT NULL;
DROP INDEX rm_reviews_newest;
CREATE INDEX rm_reviews_newest ON rm_reviews (product_id, written_at DESC, written_position DESC);

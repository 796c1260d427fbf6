-- Card tokens leave the events (issue 11): `OrderPlaced` version 3 has no `payment_token`, and
-- the upcaster drops it from versions 1 and 2 on read. The saga, the one reader, takes a
-- payment's token from here when it asks the provider to authorise, and deletes it in the
-- transaction that makes the payment final. Rows are written beside the order's events, in the
-- checkout's transaction (a claim, store/src/claims.rs).
CREATE TABLE payment_tokens (
    payment_id uuid PRIMARY KEY,
    token text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The tokens of payments that may still be authorised, copied out of the orders' events: those
-- whose checkout saga has not yet recorded the payment's end. The same ends as the saga's
-- (sagas/src/checkout.rs, `spends_token`): compensation begun (no authorisation follows it),
-- the payment captured, the saga done.
INSERT INTO payment_tokens (payment_id, token, created_at)
SELECT (e.payload -> 'OrderPlaced' ->> 'payment_id')::uuid,
       e.payload -> 'OrderPlaced' ->> 'payment_token',
       e.recorded_at
FROM events e
WHERE e.aggregate_type = 'order'
  AND e.event_type = 'OrderPlaced'
  AND e.payload -> 'OrderPlaced' ->> 'payment_token' IS NOT NULL
  AND NOT EXISTS (
      SELECT 1 FROM events s
      WHERE s.aggregate_type = 'checkout_saga'
        AND s.aggregate_id = e.aggregate_id
        AND s.event_type IN ('CompensationStarted', 'PaymentCaptured', 'SagaCompleted'))
ON CONFLICT DO NOTHING;

-- An order's snapshot serialised its state with the token: drop it there too (a snapshot is a
-- cache; the next one is written without it).
UPDATE snapshots SET payload = payload - 'payment_token'
WHERE aggregate_type = 'order' AND payload ? 'payment_token';

-- Events parked before this version kept their payload as it was then: drop the token from those
-- copies as well (the event still reads: the upcaster drops it anyway).
UPDATE dead_letters SET payload = payload #- '{OrderPlaced,payment_token}'
WHERE aggregate_type = 'order' AND event_type = 'OrderPlaced'
  AND payload -> 'OrderPlaced' ? 'payment_token';

-- Which buyer received which product: written in the same transaction as `OrderDelivered`, so a
-- review can be checked against it without scanning events.
CREATE TABLE delivered_purchases (
    buyer_id     uuid        NOT NULL,
    product_id   uuid        NOT NULL,
    order_id     uuid        NOT NULL,
    delivered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (buyer_id, product_id, order_id)
);

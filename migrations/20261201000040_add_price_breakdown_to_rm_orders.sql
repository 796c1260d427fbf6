-- The orders read model shows an order's price breakdown (OrderPlaced version 2): subtotal,
-- discount, shipping and tax (money, in the total's currency), the promotion code and the
-- shipping method. Orders placed before it had neither promotion, shipping nor tax: their
-- subtotal is their total and the rest zero, exactly what the OrderPlaced 1 → 2 upcaster
-- yields, so a rebuild from the events builds the same rows.
ALTER TABLE rm_orders
    ADD COLUMN subtotal           jsonb,
    ADD COLUMN discount           jsonb,
    ADD COLUMN shipping           jsonb,
    ADD COLUMN tax                jsonb,
    ADD COLUMN promotion_code     text,
    ADD COLUMN shipping_method_id uuid;

UPDATE rm_orders SET
    subtotal = total,
    discount = jsonb_build_object('amount', 0, 'currency', total->'currency'),
    shipping = jsonb_build_object('amount', 0, 'currency', total->'currency'),
    tax      = jsonb_build_object('amount', 0, 'currency', total->'currency');

ALTER TABLE rm_orders
    ALTER COLUMN subtotal SET NOT NULL,
    ALTER COLUMN discount SET NOT NULL,
    ALTER COLUMN shipping SET NOT NULL,
    ALTER COLUMN tax      SET NOT NULL;

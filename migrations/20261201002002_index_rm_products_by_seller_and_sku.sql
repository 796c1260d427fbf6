-- GET /v1/seller/products: a seller's products, listed or not, newest first.
CREATE INDEX rm_products_seller ON rm_products (seller_id, created_at DESC, product_id DESC);
-- GET /v1/products/by-sku/{sku}: the product of a SKU, its own or one of its variants'
-- (`variants @> '[{"sku": …}]'`).
CREATE INDEX rm_products_sku ON rm_products (sku);
CREATE INDEX rm_products_variant_skus ON rm_products USING gin (variants jsonb_path_ops);

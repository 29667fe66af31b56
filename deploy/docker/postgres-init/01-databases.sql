-- One database per service, owned by the shop role (the image creates it from POSTGRES_USER).
-- The same names as deploy/local/stack.sh (SHOP_PG_DATABASES) and the services' DATABASE_URL
-- defaults; tests/deploy/test_compose_consistency.py keeps the three in step.
CREATE DATABASE shop_point OWNER shop;
CREATE DATABASE shop_product OWNER shop;
CREATE DATABASE shop_coupon OWNER shop;
CREATE DATABASE shop_order OWNER shop;
CREATE DATABASE shop_ranking OWNER shop;

"""Products, reservations (per order and per line) and the runtime tables.

Revision ID: 0001
"""

from shopkit.database.migrations import first_revision

revision = "0001"
down_revision = None

# Frozen DDL of this revision (later changes go in new revisions, never here).
SCHEMA = [
    """
CREATE TABLE products (
    id BIGSERIAL NOT NULL,
    name VARCHAR(200) NOT NULL,
    price BIGINT NOT NULL,
    stock BIGINT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_products PRIMARY KEY (id),
    CONSTRAINT ck_products_price_positive CHECK (price > 0),
    CONSTRAINT ck_products_stock_not_negative CHECK (stock >= 0)
)
""",
    """
CREATE TABLE reservation_orders (
    order_id UUID NOT NULL,
    user_id BIGINT NOT NULL,
    status VARCHAR(16) NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_reservation_orders PRIMARY KEY (order_id),
    CONSTRAINT ck_reservation_orders_status_known CHECK (status IN ('RESERVED', 'REJECTED', 'RELEASED'))
)
""",
    """
CREATE TABLE reservations (
    order_id UUID NOT NULL,
    product_id BIGINT NOT NULL,
    quantity BIGINT NOT NULL,
    unit_price BIGINT NOT NULL,
    name VARCHAR(200) NOT NULL,
    status VARCHAR(16) NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_reservations PRIMARY KEY (order_id, product_id),
    CONSTRAINT ck_reservations_quantity_positive CHECK (quantity > 0),
    CONSTRAINT ck_reservations_unit_price_positive CHECK (unit_price > 0),
    CONSTRAINT ck_reservations_status_known CHECK (status IN ('RESERVED', 'RELEASED')),
    CONSTRAINT fk_reservations_order_id_reservation_orders FOREIGN KEY(order_id) REFERENCES reservation_orders (order_id),
    CONSTRAINT fk_reservations_product_id_products FOREIGN KEY(product_id) REFERENCES products (id)
)
""",
    """
CREATE INDEX ix_reservations_product_id ON reservations (product_id)
""",
]

upgrade, downgrade = first_revision(SCHEMA, drop=("reservations", "reservation_orders", "products"))

"""Orders, their lines and the runtime tables.

Revision ID: 0001
"""

from shopkit.database.migrations import first_revision

revision = "0001"
down_revision = None

# Frozen DDL of this revision (later changes go in new revisions, never here).
SCHEMA = [
    """
CREATE TABLE orders (
    order_id UUID NOT NULL,
    user_id BIGINT NOT NULL,
    user_coupon_id BIGINT,
    status VARCHAR(16) NOT NULL,
    failure_reason VARCHAR(32),
    stock_reserved BOOLEAN NOT NULL,
    subtotal BIGINT,
    discount BIGINT,
    total BIGINT,
    paid_amount BIGINT,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    deadline_at TIMESTAMP WITH TIME ZONE NOT NULL,
    paid_at TIMESTAMP WITH TIME ZONE,
    finished_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT pk_orders PRIMARY KEY (order_id),
    CONSTRAINT ck_orders_status_known CHECK (status IN ('PENDING', 'PAID', 'FAILED')),
    CONSTRAINT ck_orders_failed_has_reason CHECK ((status = 'FAILED') = (failure_reason IS NOT NULL)),
    CONSTRAINT ck_orders_paid_has_time CHECK ((status = 'PAID') = (paid_at IS NOT NULL)),
    CONSTRAINT ck_orders_finished_unless_pending CHECK ((status = 'PENDING') = (finished_at IS NULL)),
    CONSTRAINT ck_orders_pricing_consistent CHECK ((subtotal IS NULL AND discount IS NULL AND total IS NULL) OR (discount >= 0 AND total >= 0 AND total = subtotal - discount)),
    CONSTRAINT ck_orders_paid_is_complete CHECK (status <> 'PAID' OR (stock_reserved AND total IS NOT NULL AND paid_amount = total))
)
""",
    """
CREATE INDEX ix_orders_pending_deadline ON orders (deadline_at) WHERE status = 'PENDING'
""",
    """
CREATE INDEX ix_orders_user_id_created_at ON orders (user_id, created_at)
""",
    """
CREATE TABLE order_lines (
    order_id UUID NOT NULL,
    position SMALLINT NOT NULL,
    product_id BIGINT NOT NULL,
    quantity INTEGER NOT NULL,
    status VARCHAR(16) NOT NULL,
    excluded_reason VARCHAR(32),
    name TEXT,
    unit_price BIGINT,
    CONSTRAINT pk_order_lines PRIMARY KEY (order_id, position),
    CONSTRAINT uq_order_lines_order_id_product_id UNIQUE (order_id, product_id),
    CONSTRAINT ck_order_lines_quantity_positive CHECK (quantity >= 1),
    CONSTRAINT ck_order_lines_unit_price_not_negative CHECK (unit_price >= 0),
    CONSTRAINT ck_order_lines_status_known CHECK (status IN ('ORDERED', 'EXCLUDED')),
    CONSTRAINT ck_order_lines_excluded_has_reason CHECK ((status = 'EXCLUDED') = (excluded_reason IS NOT NULL)),
    CONSTRAINT fk_order_lines_order_id_orders FOREIGN KEY(order_id) REFERENCES orders (order_id) ON DELETE CASCADE
)
""",
]

upgrade, downgrade = first_revision(SCHEMA, drop=("order_lines", "orders"))

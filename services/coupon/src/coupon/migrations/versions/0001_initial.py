"""Coupons, user coupons, order pricings and the runtime tables.

Revision ID: 0001
"""

from shopkit.database.migrations import first_revision

revision = "0001"
down_revision = None

# Frozen DDL of this revision (later changes go in new revisions, never here).
SCHEMA = [
    """
CREATE TABLE coupons (
    id BIGSERIAL NOT NULL,
    name VARCHAR(100) NOT NULL,
    discount_type VARCHAR(16) NOT NULL,
    discount_value BIGINT NOT NULL,
    total_quantity BIGINT NOT NULL,
    issued_quantity BIGINT DEFAULT '0' NOT NULL,
    min_order_amount BIGINT NOT NULL,
    valid_days INTEGER NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_coupons PRIMARY KEY (id),
    CONSTRAINT ck_coupons_discount_type_known CHECK (discount_type IN ('FIXED', 'PERCENT')),
    CONSTRAINT ck_coupons_discount_value_positive CHECK (discount_value >= 1),
    CONSTRAINT ck_coupons_percent_at_most_100 CHECK (discount_type <> 'PERCENT' OR discount_value <= 100),
    CONSTRAINT ck_coupons_total_quantity_positive CHECK (total_quantity >= 1),
    CONSTRAINT ck_coupons_issued_within_total CHECK (issued_quantity >= 0 AND issued_quantity <= total_quantity),
    CONSTRAINT ck_coupons_min_order_amount_not_negative CHECK (min_order_amount >= 0),
    CONSTRAINT ck_coupons_valid_days_positive CHECK (valid_days >= 1)
)
""",
    """
CREATE TABLE user_coupons (
    id BIGSERIAL NOT NULL,
    coupon_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    issued_at TIMESTAMP WITH TIME ZONE NOT NULL,
    expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
    used_order_id UUID,
    used_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT pk_user_coupons PRIMARY KEY (id),
    CONSTRAINT uq_user_coupons_coupon_id UNIQUE (coupon_id, user_id),
    CONSTRAINT uq_user_coupons_used_order_id UNIQUE (used_order_id),
    CONSTRAINT ck_user_coupons_expires_after_issue CHECK (expires_at > issued_at),
    CONSTRAINT fk_user_coupons_coupon_id_coupons FOREIGN KEY(coupon_id) REFERENCES coupons (id)
)
""",
    """
CREATE INDEX ix_user_coupons_user_id_id ON user_coupons (user_id, id)
""",
    """
CREATE TABLE order_pricings (
    order_id UUID NOT NULL,
    user_id BIGINT NOT NULL,
    status VARCHAR(16) NOT NULL,
    user_coupon_id BIGINT,
    subtotal BIGINT,
    discount BIGINT,
    total BIGINT,
    detail VARCHAR(500),
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_order_pricings PRIMARY KEY (order_id)
)
""",
]

upgrade, downgrade = first_revision(SCHEMA, drop=("order_pricings", "user_coupons", "coupons"))

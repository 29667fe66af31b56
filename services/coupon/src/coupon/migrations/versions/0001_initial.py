"""Coupons, user coupons, order pricings and the runtime tables.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

from coupon.adapters.tables import Coupon, OrderPricing, UserCoupon
from shopkit.migrations import create_runtime_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    bind = op.get_bind()
    create_runtime_tables(bind)
    for table in (Coupon, UserCoupon, OrderPricing):
        sa.Table.create(table.__table__, bind)  # type: ignore[arg-type]


def downgrade() -> None:
    for name in (
        "order_pricings",
        "user_coupons",
        "coupons",
        "idempotency_keys",
        "processed_events",
        "outbox",
    ):
        op.drop_table(name)

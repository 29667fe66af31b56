"""Products, reservations (per order and per line) and the runtime tables.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

from product.adapters.tables import Product, ReservationLine, ReservationOrder
from shopkit.migrations import create_runtime_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    bind = op.get_bind()
    create_runtime_tables(bind)
    for table in (Product, ReservationOrder, ReservationLine):
        sa.Table.create(table.__table__, bind)  # type: ignore[arg-type]


def downgrade() -> None:
    for name in (
        "reservations",
        "reservation_orders",
        "products",
        "idempotency_keys",
        "processed_events",
        "outbox",
    ):
        op.drop_table(name)

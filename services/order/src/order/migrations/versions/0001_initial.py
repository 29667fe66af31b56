"""Orders, their lines and the runtime tables.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

from order.adapters.tables import OrderLineRow, OrderRow
from shopkit.migrations import create_runtime_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    bind = op.get_bind()
    create_runtime_tables(bind)
    for table in (OrderRow, OrderLineRow):
        sa.Table.create(table.__table__, bind)  # type: ignore[arg-type]


def downgrade() -> None:
    for name in ("order_lines", "orders", "idempotency_keys", "processed_events", "outbox"):
        op.drop_table(name)

"""Daily sales (the stream's mirror) and ranking snapshots.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

from ranking.adapters.tables import DailySales, Snapshot, SnapshotItem

revision = "0001"
down_revision = None


def upgrade() -> None:
    bind = op.get_bind()
    for table in (DailySales, Snapshot, SnapshotItem):
        sa.Table.create(table.__table__, bind)  # type: ignore[arg-type]


def downgrade() -> None:
    for name in ("ranking_snapshot_items", "ranking_snapshots", "daily_sales"):
        op.drop_table(name)

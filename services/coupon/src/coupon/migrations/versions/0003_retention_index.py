"""Retention prunes processed-event rows by age: an index on processed_at.

Revision ID: 0003
"""

from shopkit.database.migrations import add_retention_index_v3, drop_retention_index_v3

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    add_retention_index_v3()


def downgrade() -> None:
    drop_retention_index_v3()

"""The runtime's tables (processed_events among them) and their retention index: the stream's
claims (shopkit.messaging.claims) live here, remembered longer than any dead letter can be
replayed, instead of six hours in a Faust table.

Revision ID: 0002
"""

from shopkit.database.migrations import (
    add_retention_index_v3,
    create_runtime_tables_v1,
    drop_retention_index_v3,
    drop_runtime_tables_v1,
)

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    create_runtime_tables_v1()
    add_retention_index_v3()


def downgrade() -> None:
    drop_retention_index_v3()
    drop_runtime_tables_v1()

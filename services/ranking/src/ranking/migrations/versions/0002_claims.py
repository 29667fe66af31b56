"""The runtime's tables, as every service's database has them (outbox, processed_events,
idempotency_keys, at their latest shape): the stream's claims (shopkit.messaging.claims) live
in processed_events, remembered longer than any dead letter can be replayed (pruned by
shopkit.database.retention, which needs all three), instead of six hours in a Faust table.

Revision ID: 0002
"""

from shopkit.database.migrations import (
    add_outbox_wakeup_v2,
    add_retention_index_v3,
    add_trace_context_v4,
    create_runtime_tables_v1,
    drop_outbox_wakeup_v2,
    drop_retention_index_v3,
    drop_runtime_tables_v1,
    drop_trace_context_v4,
)

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    create_runtime_tables_v1()
    add_outbox_wakeup_v2()
    add_retention_index_v3()
    add_trace_context_v4()


def downgrade() -> None:
    drop_trace_context_v4()
    drop_retention_index_v3()
    drop_outbox_wakeup_v2()
    drop_runtime_tables_v1()

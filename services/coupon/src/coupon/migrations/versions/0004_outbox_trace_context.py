"""The outbox keeps each event's trace context, sent with it as Kafka headers.

Revision ID: 0004
"""

from shopkit.database.migrations import add_trace_context_v4, drop_trace_context_v4

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    add_trace_context_v4()


def downgrade() -> None:
    drop_trace_context_v4()

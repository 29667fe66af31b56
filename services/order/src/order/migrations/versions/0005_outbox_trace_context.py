"""The outbox keeps each event's trace context, sent with it as Kafka headers.

Revision ID: 0005
"""

from shopkit.database.migrations import add_trace_context_v4 as upgrade
from shopkit.database.migrations import drop_trace_context_v4 as downgrade

__all__ = ["downgrade", "upgrade"]
revision = "0005"
down_revision = "0004"

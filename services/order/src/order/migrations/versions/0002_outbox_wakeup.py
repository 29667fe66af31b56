"""The outbox relay is woken by commits (NOTIFY from a trigger) and reads a partial index.

Revision ID: 0002
"""

from shopkit.database.migrations import add_outbox_wakeup_v2 as upgrade
from shopkit.database.migrations import drop_outbox_wakeup_v2 as downgrade

__all__ = ["downgrade", "upgrade"]
revision = "0002"
down_revision = "0001"

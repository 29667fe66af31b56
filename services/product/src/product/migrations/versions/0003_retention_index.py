"""Retention prunes processed-event rows by age: an index on processed_at.

Revision ID: 0003
"""

from shopkit.database.migrations import add_retention_index_v3 as upgrade
from shopkit.database.migrations import drop_retention_index_v3 as downgrade

__all__ = ["downgrade", "upgrade"]
revision = "0003"
down_revision = "0002"

"""The outbox relay is woken by commits (NOTIFY from a trigger) and reads a partial index.

Revision ID: 0002
"""

from shopkit.database.migrations import add_outbox_wakeup_v2, drop_outbox_wakeup_v2

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    add_outbox_wakeup_v2()


def downgrade() -> None:
    drop_outbox_wakeup_v2()

"""An order that ends announces itself: NOTIFY order_done from a trigger (no extra round trip).

Revision ID: 0003
"""

from alembic import op

revision = "0003"
down_revision = "0002"

# Frozen DDL of this revision.
SCHEMA = [
    """
CREATE FUNCTION order_done_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('order_done', NEW.order_id::text);
    RETURN NULL;
END
$$
""",
    """
CREATE TRIGGER order_done AFTER UPDATE OF status ON orders FOR EACH ROW
WHEN (OLD.status = 'PENDING' AND NEW.status <> 'PENDING')
EXECUTE FUNCTION order_done_notify()
""",
]


def upgrade() -> None:
    for statement in SCHEMA:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER order_done ON orders")
    op.execute("DROP FUNCTION order_done_notify()")

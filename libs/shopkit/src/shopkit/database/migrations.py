"""Alembic, driven from code. Each service keeps its revisions in `<service>/migrations/versions`
and a two-line `env.py` that calls `run_env()`; `upgrade()` applies them at start-up under a
PostgreSQL advisory lock, so N replicas starting together migrate once."""

import asyncio
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

_MIGRATION_LOCK = 7_202_611_250  # arbitrary, the same in every service


def alembic_config(script_location: Path, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


async def upgrade(script_location: Path, database_url: str) -> None:
    config = alembic_config(script_location, database_url)
    await asyncio.to_thread(command.upgrade, config, "head")


# The runtime's tables as first released, frozen: a later change gets its own pair of functions
# and each service a new revision that names them as its upgrade and downgrade, never an edit here.
RUNTIME_TABLES_V1 = [
    """
CREATE TABLE outbox (
    id BIGSERIAL NOT NULL,
    event_id UUID NOT NULL,
    topic VARCHAR(200) NOT NULL,
    key VARCHAR(200) NOT NULL,
    event_type VARCHAR(100) NOT NULL,
    envelope JSONB NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    sent_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT pk_outbox PRIMARY KEY (id),
    CONSTRAINT uq_outbox_event_id UNIQUE (event_id)
)
""",
    """
CREATE INDEX ix_outbox_sent_at ON outbox (sent_at)
""",
    """
CREATE TABLE processed_events (
    consumer VARCHAR(200) NOT NULL,
    event_id UUID NOT NULL,
    processed_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_processed_events PRIMARY KEY (consumer, event_id)
)
""",
    """
CREATE TABLE idempotency_keys (
    scope VARCHAR(200) NOT NULL,
    key VARCHAR(255) NOT NULL,
    request_hash VARCHAR(64) NOT NULL,
    status_code INTEGER NOT NULL,
    response JSONB NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_idempotency_keys PRIMARY KEY (scope, key)
)
""",
    """
CREATE INDEX ix_idempotency_keys_created_at ON idempotency_keys (created_at)
""",
]


def execute_all(statements: Iterable[str]) -> None:
    """Runs a revision's frozen DDL, statement by statement."""
    for statement in statements:
        op.execute(statement)


def drop_tables(names: Iterable[str]) -> None:
    """Drops tables in the order given (the order they can be dropped in)."""
    for name in names:
        op.drop_table(name)


def create_runtime_tables_v1() -> None:
    """Called by each service's first revision: outbox, processed_events, idempotency_keys."""
    execute_all(RUNTIME_TABLES_V1)


def drop_runtime_tables_v1() -> None:
    """The downgrade of create_runtime_tables_v1, for each service's first revision."""
    drop_tables(("idempotency_keys", "processed_events", "outbox"))


Step = Callable[[], None]
"""A revision's `upgrade` or `downgrade`."""


def first_revision(
    schema: Sequence[str], *, drop: Sequence[str], runtime_tables: bool = True
) -> tuple[Step, Step]:
    """A service's first revision, as its `(upgrade, downgrade)` (Alembic reads them as module
    attributes): the runtime tables (v1) unless `runtime_tables` is off (a service without
    outbox or consumers), then the service's own `schema`; `drop` names the service's tables in
    the order they can be dropped."""

    def upgrade() -> None:
        if runtime_tables:
            create_runtime_tables_v1()
        execute_all(schema)

    def downgrade() -> None:
        drop_tables(drop)
        if runtime_tables:
            drop_runtime_tables_v1()

    return upgrade, downgrade


OUTBOX_CHANNEL = "shop_outbox"
"""NOTIFY channel of the outbox relay: a transaction that staged events wakes it at commit."""

# Revision 2 of the runtime tables, frozen like v1: the relay is woken by the commit of every
# transaction that inserted outbox rows (a statement trigger: no extra round trip, and NOTIFYs
# of one transaction collapse into one), and finds unsent rows through a partial index.
OUTBOX_WAKEUP_V2 = [
    f"""
CREATE FUNCTION outbox_wakeup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{OUTBOX_CHANNEL}', '');
    RETURN NULL;
END
$$
""",
    """
CREATE TRIGGER outbox_wakeup AFTER INSERT ON outbox
FOR EACH STATEMENT EXECUTE FUNCTION outbox_wakeup()
""",
    """
CREATE INDEX ix_outbox_unsent ON outbox (id) WHERE sent_at IS NULL
""",
]


def add_outbox_wakeup_v2() -> None:
    execute_all(OUTBOX_WAKEUP_V2)


def drop_outbox_wakeup_v2() -> None:
    op.execute("DROP INDEX ix_outbox_unsent")
    op.execute("DROP TRIGGER outbox_wakeup ON outbox")
    op.execute("DROP FUNCTION outbox_wakeup()")


def _run(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=False)
    with context.begin_transaction():
        context.run_migrations()


def run_env() -> None:
    """The body of every service's migrations/env.py."""
    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None

    async def main() -> None:
        engine = create_async_engine(url, poolclass=NullPool)
        async with engine.begin() as conn:
            await conn.run_sync(_run)
        await engine.dispose()

    asyncio.run(main())


# Revision 3, frozen like the others: retention (shopkit.database.retention) deletes processed-event rows
# by age, which needs an index on it (the outbox and idempotency keys have theirs).
RETENTION_INDEX_V3 = [
    """
CREATE INDEX IF NOT EXISTS ix_processed_events_processed_at ON processed_events (processed_at)
""",
]


def add_retention_index_v3() -> None:
    execute_all(RETENTION_INDEX_V3)


def drop_retention_index_v3() -> None:
    op.execute("DROP INDEX IF EXISTS ix_processed_events_processed_at")


# Revision 4, frozen like the others: the trace context of the transaction that staged an event,
# sent with it as Kafka headers (shopkit.ops.tracing). A nullable column: no rewrite of the table.
TRACE_CONTEXT_V4 = [
    """
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS trace_context JSONB
""",
]


def add_trace_context_v4() -> None:
    execute_all(TRACE_CONTEXT_V4)


def drop_trace_context_v4() -> None:
    op.execute("ALTER TABLE outbox DROP COLUMN IF EXISTS trace_context")

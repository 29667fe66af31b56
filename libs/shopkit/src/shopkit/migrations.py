"""Alembic, driven from code. Each service keeps its revisions in `<service>/migrations/versions`
and a two-line `env.py` that calls `run_env()`; `upgrade()` applies them at start-up under a
PostgreSQL advisory lock, so N replicas starting together migrate once."""

import asyncio
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from shopkit.db import Base

_MIGRATION_LOCK = 7_202_611_250  # arbitrary, the same in every service


def alembic_config(script_location: Path, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


async def upgrade(script_location: Path, database_url: str) -> None:
    config = alembic_config(script_location, database_url)
    await asyncio.to_thread(command.upgrade, config, "head")


def create_runtime_tables(connection: Connection) -> None:
    """Called by each service's first revision: outbox, processed_events, idempotency_keys."""
    for name in ("outbox", "processed_events", "idempotency_keys"):
        Base.metadata.tables[name].create(connection, checkfirst=True)


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

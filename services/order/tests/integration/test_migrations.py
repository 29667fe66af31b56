"""The order database's migrations apply, roll back and apply again on an empty database."""

import asyncio

import asyncpg
from alembic import command

from order.main import MIGRATIONS
from shopkit.database.migrations import alembic_config, upgrade
from shopkit.testing import asyncpg_dsn, temp_database

TABLES = {"orders", "order_lines", "outbox", "processed_events", "idempotency_keys"}


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename <> 'alembic_version'"
        )
    finally:
        await conn.close()
    return {r["tablename"] for r in rows}


async def test_migrations_upgrade_downgrade_and_upgrade_again() -> None:
    async with temp_database("order_migrations") as url:
        await upgrade(MIGRATIONS, url)
        assert await _tables(url) == TABLES
        await asyncio.to_thread(command.downgrade, alembic_config(MIGRATIONS, url), "base")
        assert await _tables(url) == set()
        await upgrade(MIGRATIONS, url)
        assert await _tables(url) == TABLES

import asyncio

import asyncpg
from alembic import command

from product.main import MIGRATIONS
from shopkit.database.migrations import alembic_config, upgrade
from shopkit.testing import asyncpg_dsn, temp_database

TABLES = (
    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
)


async def test_migrations_upgrade_downgrade_and_upgrade_again() -> None:
    async with temp_database("product_migrations") as url:
        db = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await upgrade(MIGRATIONS, url)
            expected = {
                "products",
                "reservation_orders",
                "reservations",
                "outbox",
                "processed_events",
                "idempotency_keys",
            }
            assert {r[0] for r in await db.fetch(TABLES)} == expected
            await asyncio.to_thread(command.downgrade, alembic_config(MIGRATIONS, url), "base")
            assert await db.fetch(TABLES) == []
            await upgrade(MIGRATIONS, url)
            assert {r[0] for r in await db.fetch(TABLES)} == expected
        finally:
            await db.close()

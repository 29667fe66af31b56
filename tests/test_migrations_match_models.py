"""Each service's migrations, applied to an empty database, give exactly the schema its models
describe (the first revision's DDL is frozen; this catches a model changed without a revision)."""

import importlib
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from shopkit.database.engine import Base, create_engine
from shopkit.database.migrations import upgrade
from shopkit.settings import ServiceSettings
from shopkit.testing import temp_database

RUNTIME_TABLES = {"outbox", "processed_events", "idempotency_keys"}
SERVICES = {"point": True, "product": True, "coupon": True, "order": True, "ranking": False}


def service_tables(service: str) -> set[str]:
    importlib.import_module(f"{service}.adapters.tables")
    return {
        mapper.local_table.name  # type: ignore[union-attr]
        for mapper in Base.registry.mappers
        if mapper.class_.__module__.startswith(f"{service}.")
    }


@pytest.mark.parametrize(("service", "has_runtime_tables"), SERVICES.items())
async def test_migrations_create_exactly_what_the_models_describe(
    service: str, has_runtime_tables: bool
) -> None:
    expected = service_tables(service) | (RUNTIME_TABLES if has_runtime_tables else set())
    migrations = Path(importlib.import_module(f"{service}.main").__file__).parent / "migrations"  # type: ignore[arg-type]

    def diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(
            connection,
            opts={
                "include_name": lambda name, kind, _: kind != "table" or name in expected,
                "include_object": lambda obj, name, kind, reflected, _: (
                    kind != "table" or name in expected
                ),
                "compare_type": True,
                "compare_server_default": False,
            },
        )
        return list(compare_metadata(context, Base.metadata))

    async with temp_database(f"mig_{service}") as url:
        await upgrade(migrations, url)
        engine = create_engine(ServiceSettings(database_url=url))
        try:
            async with engine.connect() as conn:
                differences = await conn.run_sync(diff)
                tables = set(await conn.run_sync(lambda c: c.dialect.get_table_names(c)))
        finally:
            await engine.dispose()
    assert tables - {"alembic_version"} == expected
    assert differences == []

"""Throwaway resources on the shared stack: every test session gets its own databases and
Kafka topic prefix (names made by `unique`), so runs, parallel or not, never see each other's
rows or events, and nothing needs Docker."""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

ADMIN_DSN = os.environ.get("TEST_ADMIN_DSN", "postgresql://shop:shop@localhost:5432/postgres")
KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")


TOPIC_PREFIXES: set[str] = set()
"""The topic prefixes this test session made (`unique("t.…")`), for `delete_topics`."""


def unique(prefix: str) -> str:
    made = f"{prefix}{uuid.uuid4().hex[:10]}"
    if prefix.startswith("t."):
        TOPIC_PREFIXES.add(made)
    return made


async def delete_topics(prefixes: set[str]) -> int:
    """Deletes the topics whose names start with one of `prefixes` (a session's own, so a run
    does not leave thousands of partitions to the broker); how many."""
    from aiokafka.admin import AIOKafkaAdminClient

    if not prefixes:
        return 0
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if t.startswith(tuple(prefixes))]
        for start in range(0, len(doomed), 100):
            await admin.delete_topics(doomed[start : start + 100])
        return len(doomed)
    finally:
        await admin.close()


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://")


@asynccontextmanager
async def temp_database(name_prefix: str, admin_dsn: str = ADMIN_DSN) -> AsyncIterator[str]:
    """A fresh empty database on the server of `admin_dsn` (the shared stack's by default);
    yields its SQLAlchemy URL and drops it afterwards."""
    name = unique(f"t_{name_prefix}_")
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(admin_dsn)
        try:
            for attempt in range(20):
                try:
                    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    break
                except asyncpg.InsufficientPrivilegeError:
                    # an autovacuum worker (which only a superuser may end) is in the new
                    # database for a moment
                    if attempt == 19:
                        raise
                    await asyncio.sleep(0.25)
        finally:
            await admin.close()

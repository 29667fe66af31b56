from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shopkit.database.engine import Base, create_engine, session_factory
from shopkit.settings import ServiceSettings
from shopkit.testing import delete_topics, temp_database, unique


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    async with temp_database("shopkit") as url:
        yield url


@pytest.fixture
async def settings(database_url: str) -> AsyncIterator[ServiceSettings]:
    """A fresh topic prefix per test: every test sees only its own events (and its topics go
    with it, so a session does not pile up thousands of partitions on the broker)."""
    prefix = unique("t.kit.") + "."
    yield ServiceSettings(
        service_name="shopkit-test",
        database_url=database_url,
        kafka_topic_prefix=prefix,
        consumer_max_retries=2,
        consumer_retry_backoff_s=0.01,
        outbox_poll_interval_s=0.02,
    )
    await delete_topics({prefix})


@pytest.fixture(scope="session")
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(ServiceSettings(database_url=database_url))
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        await conn.execute(
            text("CREATE TABLE effects (id bigserial PRIMARY KEY, order_id uuid, amount bigint)")
        )
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture(autouse=True)
async def clean(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as s, s.begin():
        await s.execute(text("TRUNCATE outbox, processed_events, idempotency_keys, effects"))

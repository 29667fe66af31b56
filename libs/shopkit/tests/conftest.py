"""The shared setup of shopkit's own tests: a throwaway database with the runtime's tables and
`effects`, a fresh topic prefix per test, and the pieces of a test handler that the test
modules import from here: the payment events it handles and the effect it leaves."""

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import BigInteger, Column, MetaData, Table, func, insert, select, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shop_contracts import Envelope, PaymentCompleted
from shopkit.database.engine import Base, create_engine, session_factory
from shopkit.database.uow import UnitOfWork
from shopkit.settings import ServiceSettings
from shopkit.testing import delete_topics, temp_database, unique

effects = Table(  # where a test handler's effect becomes visible
    "effects",
    MetaData(),
    Column("id", BigInteger, primary_key=True),
    Column("order_id", UUID(as_uuid=True)),
    Column("amount", BigInteger),
)


async def record_effect(uow: UnitOfWork, event: PaymentCompleted, _: Envelope) -> None:
    await uow.session.execute(insert(effects).values(order_id=event.order_id, amount=event.amount))


async def effect_count(sessions: async_sessionmaker[AsyncSession], order_id: uuid.UUID) -> int:
    async with sessions() as s:
        return int(await s.scalar(select(func.count()).where(effects.c.order_id == order_id)) or 0)


def payment_event(order_id: uuid.UUID, amount: int = 1) -> Envelope:
    """A PaymentCompleted of `order_id` (its key: one partition per order), as a producer sends it."""
    return Envelope.wrap(
        PaymentCompleted(order_id=order_id, user_id=1, amount=amount, balance_after=0),
        producer="test",
    )


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
        await conn.run_sync(effects.create)
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture(autouse=True)
async def clean(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as s, s.begin():
        await s.execute(text("TRUNCATE outbox, processed_events, idempotency_keys, effects"))

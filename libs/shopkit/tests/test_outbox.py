"""The transactional outbox against real PostgreSQL and Kafka."""

import asyncio
import uuid
from typing import Any

import asyncpg
import orjson
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shop_contracts import Envelope, PaymentCompleted, topics
from shopkit.database.engine import OutboxRow
from shopkit.database.uow import UnitOfWork
from shopkit.messaging.kafka import ensure_topics, make_producer
from shopkit.messaging.outbox import OutboxRelay
from shopkit.settings import ServiceSettings
from shopkit.testing import collect, topic_reader

from .conftest import effects


def payment(order_id: uuid.UUID, amount: int = 1) -> PaymentCompleted:
    return PaymentCompleted(order_id=order_id, user_id=1, amount=amount, balance_after=0)


def envelopes(records: list[Any]) -> list[Envelope]:
    return [Envelope.model_validate(orjson.loads(r.value)) for r in records]


async def relay_once(settings: ServiceSettings, sessions: async_sessionmaker[AsyncSession]) -> int:
    producer = make_producer(settings)
    await producer.start()
    try:
        return await OutboxRelay(settings, sessions, producer).publish_batch()
    finally:
        await producer.stop()


async def test_rolled_back_event_is_never_published_and_committed_one_is_published_once(
    settings: ServiceSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await ensure_topics(settings, list(topics.ALL_TOPICS))
    rolled_back, committed = uuid.uuid4(), uuid.uuid4()
    async with UnitOfWork(sessions, "test") as uow:
        uow.emit(payment(rolled_back))  # never committed: rolled back on exit
    async with UnitOfWork(sessions, "test") as uow:
        uow.emit(payment(committed))
        await uow.commit()

    assert await relay_once(settings, sessions) == 1
    assert await relay_once(settings, sessions) == 0  # nothing left: published once

    async with topic_reader(settings.topic(topics.PAYMENT_EVENTS)) as reader:
        seen = await collect(reader, lambda records: len(records) >= 1)
        await asyncio.sleep(0.5)
        seen += [r for batch in (await reader.getmany(timeout_ms=500)).values() for r in batch]
    assert [e.order_id for e in envelopes(seen)] == [committed]


class CrashAfterPublish(OutboxRelay):
    """Dies after Kafka acknowledged the batch but before the rows are marked sent."""

    async def _mark_sent(self, session: AsyncSession, ids: list[int]) -> None:
        raise RuntimeError("killed between publish and mark-sent")


async def test_relay_killed_between_publish_and_mark_republishes_on_restart(
    settings: ServiceSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await ensure_topics(settings, list(topics.ALL_TOPICS))
    order_id = uuid.uuid4()
    async with UnitOfWork(sessions, "test") as uow:
        staged = uow.emit(payment(order_id))
        await uow.commit()
    producer = make_producer(settings)
    await producer.start()
    try:
        with pytest.raises(RuntimeError, match="killed"):
            await CrashAfterPublish(settings, sessions, producer).publish_batch()
    finally:
        await producer.stop()
    async with sessions() as s:
        unsent = await s.scalar(select(func.count()).where(OutboxRow.sent_at.is_(None)))
    assert unsent == 1  # the crash lost nothing
    assert await relay_once(settings, sessions) == 1
    assert await relay_once(settings, sessions) == 0

    async with topic_reader(settings.topic(topics.PAYMENT_EVENTS)) as reader:
        seen = envelopes(await collect(reader, lambda records: len(records) >= 2))
    # published twice with the same event id: the consumer dedupes (see test_consumer.py)
    assert [e.event_id for e in seen] == [staged.event_id, staged.event_id]


async def test_events_of_one_key_arrive_in_order_with_concurrent_relays(
    settings: ServiceSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await ensure_topics(settings, list(topics.ALL_TOPICS))
    settings = settings.model_copy(update={"outbox_batch_size": 7})
    keys = [uuid.uuid4() for _ in range(3)]
    for n in range(60):  # 60 transactions, interleaving three keys
        async with UnitOfWork(sessions, "test") as uow:
            uow.emit(payment(keys[n % 3], amount=n))
            await uow.commit()

    stop = asyncio.Event()
    producers = [make_producer(settings) for _ in range(3)]
    for p in producers:
        await p.start()
    relays = [asyncio.create_task(OutboxRelay(settings, sessions, p).run(stop)) for p in producers]
    try:
        async with topic_reader(settings.topic(topics.PAYMENT_EVENTS)) as reader:
            seen = envelopes(await collect(reader, lambda records: len(records) >= 60))
    finally:
        stop.set()
        await asyncio.gather(*relays)
        for p in producers:
            await p.stop()
    assert len(seen) == 60
    for key in keys:
        amounts = [e.payload["amount"] for e in seen if e.order_id == key]
        assert amounts == sorted(amounts)
        assert len(amounts) == 20


async def test_a_unit_of_work_of_inserts_commits_them_with_its_events_or_neither(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    kept, lost = uuid.uuid4(), uuid.uuid4()
    async with UnitOfWork(sessions, "test") as uow:
        uow.insert(effects, [{"id": 1, "order_id": kept, "amount": 5}])
        uow.emit(payment(kept))
        await uow.commit()  # nothing ran before: one statement, its own transaction
    async with UnitOfWork(sessions, "test") as uow:
        uow.insert(effects, [{"id": 2, "order_id": lost, "amount": 1}])
        uow.insert(effects, [{"id": 1, "order_id": lost, "amount": 1}])  # id taken
        uow.emit(payment(lost))
        with pytest.raises(asyncpg.UniqueViolationError):  # the driver's: a Prepared statement
            await uow.commit()
    async with sessions() as s:
        rows = (await s.execute(select(effects.c.order_id))).scalars().all()
        keys = (await s.execute(select(OutboxRow.key))).scalars().all()
    assert rows == [kept]
    assert keys == [str(kept)]

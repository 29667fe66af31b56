"""The idempotent consumer against real PostgreSQL and Kafka."""

import asyncio
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shop_contracts import Envelope, PaymentCompleted, topics
from shopkit.database.engine import autocommit, create_engine, session_factory
from shopkit.database.uow import UnitOfWork
from shopkit.messaging.kafka import ensure_topics, make_producer
from shopkit.settings import ServiceSettings
from shopkit.testing import collect, eventually, publish_envelope, topic_reader
from shopkit.testing import running_consumer as shared_running_consumer

from .conftest import effect_count, payment_event, record_effect

Handler = Callable[[UnitOfWork, Any, Envelope], Awaitable[None]]


def running_consumer(
    settings: ServiceSettings, sessions: async_sessionmaker[AsyncSession], handler: Handler
) -> AbstractAsyncContextManager[AIOKafkaProducer]:
    return shared_running_consumer(
        settings,
        sessions,
        {PaymentCompleted: handler},
        group_id="kit-test",
        topics=[topics.PAYMENT_EVENTS],
    )


@asynccontextmanager
async def dead_letters_and_consumer(
    settings: ServiceSettings, sessions: async_sessionmaker[AsyncSession], handler: Handler
) -> AsyncIterator[AIOKafkaConsumer]:
    """The consumer running `handler`, and a reader of the dead-letter topic (started first, so it
    sees every dead letter)."""
    async with (
        topic_reader(settings.topic(topics.DEAD_LETTER)) as dead_letters,
        running_consumer(settings, sessions, handler),
    ):
        yield dead_letters


@dataclass
class Failing:
    """A handler whose `failure` (raising, or failing for real in the database) comes first on
    the events `fails_on` picks, for at most `times` calls; otherwise it records the effect.
    `failures` counts the calls that failed."""

    failure: Callable[[UnitOfWork], Awaitable[None]]
    fails_on: Callable[[PaymentCompleted], bool] = lambda _: True
    times: float = math.inf
    failures: int = 0

    async def __call__(
        self, uow: UnitOfWork, payment: PaymentCompleted, envelope: Envelope
    ) -> None:
        if self.failures < self.times and self.fails_on(payment):
            self.failures += 1
            await self.failure(uow)
        await record_effect(uow, payment, envelope)


def raising(error: Exception) -> Callable[[UnitOfWork], Awaitable[None]]:
    async def fail(_: UnitOfWork) -> None:
        raise error

    return fail


async def send_raw(
    settings: ServiceSettings, value: bytes, headers: list[tuple[str, bytes]] | None = None
) -> None:
    """`value` as it is (not an envelope) on the payment topic, from a producer of its own."""
    producer = make_producer(settings)
    await producer.start()
    try:
        topic = settings.topic(topics.PAYMENT_EVENTS)
        await producer.send_and_wait(topic, value, key=b"k", headers=headers)
    finally:
        await producer.stop()


async def test_same_event_delivered_twice_applies_once(
    settings: ServiceSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    order_id, marker = uuid.uuid4(), uuid.uuid4()
    twice = payment_event(order_id)
    async with running_consumer(settings, sessions, record_effect):
        await publish_envelope(
            settings.topic(topics.PAYMENT_EVENTS),
            twice,
            twice,
            payment_event(order_id),
            payment_event(marker),
        )
        await eventually(lambda: effect_count(sessions, marker))
        await eventually(lambda: effect_count(sessions, order_id))
    # the duplicate of `twice` is ignored; the other event for the same order is a new fact
    assert await effect_count(sessions, order_id) == 2


async def test_redelivery_after_a_restart_changes_nothing(
    settings: ServiceSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    order_id = uuid.uuid4()
    envelope = payment_event(order_id)
    async with running_consumer(settings, sessions, record_effect):
        await publish_envelope(settings.topic(topics.PAYMENT_EVENTS), envelope)
        await eventually(lambda: effect_count(sessions, order_id))
    async with running_consumer(settings, sessions, record_effect):  # same group, same offsets
        await publish_envelope(settings.topic(topics.PAYMENT_EVENTS), envelope)
        await asyncio.sleep(1.5)
    assert await effect_count(sessions, order_id) == 1


async def test_failing_handler_dead_letters_after_retries_and_the_partition_moves_on(
    settings: ServiceSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    order_id = uuid.uuid4()
    handler = Failing(raising(ValueError("poison")), fails_on=lambda payment: payment.amount == 13)
    poison, healthy = (
        payment_event(order_id, amount=13),
        payment_event(order_id, amount=14),
    )  # same key, same partition
    async with dead_letters_and_consumer(settings, sessions, handler) as dead_letters:
        await publish_envelope(settings.topic(topics.PAYMENT_EVENTS), poison, healthy)
        await eventually(lambda: effect_count(sessions, order_id))
        [dead] = await collect(dead_letters, lambda records: len(records) >= 1)
    assert handler.failures == settings.consumer_max_retries + 1
    headers = dict(dead.headers)
    assert headers["dlq.consumer"] == b"kit-test"
    assert b"poison" in headers["dlq.error"]
    assert Envelope.model_validate_json(dead.value).event_id == poison.event_id
    assert await effect_count(sessions, order_id) == 1


async def test_unparseable_message_is_dead_lettered(
    settings: ServiceSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    marker = uuid.uuid4()
    async with dead_letters_and_consumer(settings, sessions, record_effect) as dead_letters:
        await send_raw(settings, b"{not json")
        await publish_envelope(settings.topic(topics.PAYMENT_EVENTS), payment_event(marker))
        await eventually(lambda: effect_count(sessions, marker))
        [dead] = await collect(dead_letters, lambda records: len(records) >= 1)
    assert dead.value == b"{not json"


async def _handled_once_not_dead_lettered(
    settings: ServiceSettings,
    sessions: async_sessionmaker[AsyncSession],
    handler: Handler,
    order_id: uuid.UUID,
) -> None:
    """One event for `handler`, whose failures are transient: handled once in the end, and
    never dead-lettered meanwhile."""
    async with dead_letters_and_consumer(settings, sessions, handler) as dead_letters:
        await publish_envelope(settings.topic(topics.PAYMENT_EVENTS), payment_event(order_id))
        await eventually(lambda: effect_count(sessions, order_id), timeout_s=60)
        late = await dead_letters.getmany(timeout_ms=500)
    assert not any(late.values())
    assert await effect_count(sessions, order_id) == 1


async def test_a_database_outage_is_waited_out_not_dead_lettered(
    settings: ServiceSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    outage = OperationalError("SELECT 1", {}, ConnectionRefusedError("database restarting"))
    flaky = Failing(raising(outage), times=settings.consumer_max_retries + 3)  # > the retries
    await _handled_once_not_dead_lettered(settings, sessions, flaky, uuid.uuid4())
    assert flaky.failures == settings.consumer_max_retries + 3


async def test_another_consumers_event_is_skipped_unread_by_its_header(
    settings: ServiceSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    marker = uuid.uuid4()
    async with dead_letters_and_consumer(settings, sessions, record_effect) as dead_letters:
        # not JSON at all: read, it would be dead-lettered; its header says it is not ours
        await send_raw(settings, b"{not json", headers=[("event_type", b"OrderCreated")])
        await publish_envelope(settings.topic(topics.PAYMENT_EVENTS), payment_event(marker))
        await eventually(lambda: effect_count(sessions, marker))
        late = await dead_letters.getmany(timeout_ms=1_000)
    assert not any(late.values())


async def test_a_failing_event_in_a_batch_is_isolated_and_the_rest_commit_in_few_transactions(
    settings: ServiceSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    order_id = uuid.uuid4()
    transactions: set[int] = set()

    async def handler(uow: UnitOfWork, payment: PaymentCompleted, envelope: Envelope) -> None:
        if payment.amount == 10:
            raise ValueError("poison")
        transactions.add(int(await uow.session.scalar(text("SELECT txid_current()")) or 0))
        await record_effect(uow, payment, envelope)

    batch = [
        payment_event(order_id, amount=n) for n in range(20)
    ]  # one key: one partition, in order
    await ensure_topics(settings, list(topics.ALL_TOPICS))
    await publish_envelope(settings.topic(topics.PAYMENT_EVENTS), *batch)  # before it starts
    async with dead_letters_and_consumer(settings, sessions, handler) as dead_letters:
        await eventually(lambda: _at_least(sessions, order_id, 19))
        [dead] = await collect(dead_letters, lambda records: len(records) >= 1)
    assert Envelope.model_validate_json(dead.value).payload["amount"] == 10
    assert await effect_count(sessions, order_id) == 19
    # the first attempt (rolled back) + the 10 before the poison + the 9 after: not 19 commits
    assert len(transactions) <= 4


async def _at_least(
    sessions: async_sessionmaker[AsyncSession], order_id: uuid.UUID, n: int
) -> bool:
    return await effect_count(sessions, order_id) >= n


async def test_a_statement_timeout_is_retried_while_it_lasts_not_dead_lettered(
    settings: ServiceSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A real PostgreSQL statement timeout (SQLSTATE 57014, a plain DBAPIError through asyncpg)
    more times than a failing event is retried: the event waits, then is handled; had it been
    an OrderFailed, its refund would have been dead-lettered before."""

    async def time_out(uow: UnitOfWork) -> None:
        await uow.session.execute(text("SET LOCAL statement_timeout = 5"))
        await uow.session.execute(text("SELECT pg_sleep(0.5)"))

    slow_database = Failing(time_out, times=settings.consumer_max_retries + 4)
    await _handled_once_not_dead_lettered(settings, sessions, slow_database, uuid.uuid4())
    assert slow_database.failures == settings.consumer_max_retries + 4


async def test_a_database_refusing_connections_is_waited_out_not_dead_lettered(
    settings: ServiceSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Connections exhausted (SQLSTATE 53300, "too many connections" for real: the database's
    limit set to 0) while an event arrives: it is applied once connections are let in again."""
    order_id = uuid.uuid4()
    database = settings.database_url.rsplit("/", 1)[1]
    engine = create_engine(settings)  # no pooled connection yet: each attempt connects
    async with sessions() as admin:
        await autocommit(admin)
        await admin.execute(text(f'ALTER DATABASE "{database}" CONNECTION LIMIT 0'))
    try:
        async with dead_letters_and_consumer(
            settings, session_factory(engine), record_effect
        ) as dead_letters:
            await publish_envelope(settings.topic(topics.PAYMENT_EVENTS), payment_event(order_id))
            await asyncio.sleep(2.0)  # several attempts refused meanwhile
            assert await effect_count(sessions, order_id) == 0
            async with sessions() as admin:
                await autocommit(admin)
                await admin.execute(text(f'ALTER DATABASE "{database}" CONNECTION LIMIT -1'))
            await eventually(lambda: effect_count(sessions, order_id), timeout_s=60)
            late = await dead_letters.getmany(timeout_ms=500)
    finally:
        async with sessions() as admin:
            await autocommit(admin)
            await admin.execute(text(f'ALTER DATABASE "{database}" CONNECTION LIMIT -1'))
        await engine.dispose()
    assert not any(late.values())
    assert await effect_count(sessions, order_id) == 1


async def test_a_deadlock_victim_is_retried_and_applied_once(
    settings: ServiceSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A real deadlock between a handler and another transaction: the handler waits first, so
    PostgreSQL picks it as the victim (SQLSTATE 40P01). Its event is retried and applied once."""
    async with sessions() as s, s.begin():
        await s.execute(text("CREATE TABLE IF NOT EXISTS lock_rows (id int PRIMARY KEY)"))
        await s.execute(text("INSERT INTO lock_rows VALUES (1), (2) ON CONFLICT DO NOTHING"))
    order_id = uuid.uuid4()
    holds_first = asyncio.Event()
    attempts = 0

    async def locks_1_then_2(
        uow: UnitOfWork, payment: PaymentCompleted, envelope: Envelope
    ) -> None:
        nonlocal attempts
        attempts += 1
        await uow.session.execute(text("UPDATE lock_rows SET id = id WHERE id = 1"))
        holds_first.set()
        await uow.session.execute(text("UPDATE lock_rows SET id = id WHERE id = 2"))
        await record_effect(uow, payment, envelope)

    other = create_engine(settings)
    try:
        async with dead_letters_and_consumer(settings, sessions, locks_1_then_2) as dead_letters:
            async with other.begin() as conn:
                await conn.execute(text("UPDATE lock_rows SET id = id WHERE id = 2"))
                await publish_envelope(
                    settings.topic(topics.PAYMENT_EVENTS), payment_event(order_id)
                )
                await holds_first.wait()
                await asyncio.sleep(0.3)  # the handler now waits for row 2, first
                await conn.execute(text("UPDATE lock_rows SET id = id WHERE id = 1"))
            await eventually(lambda: effect_count(sessions, order_id), timeout_s=30)
            late = await dead_letters.getmany(timeout_ms=500)
    finally:
        await other.dispose()
    assert attempts >= 2  # the first was the deadlock's victim
    assert not any(late.values())
    assert await effect_count(sessions, order_id) == 1

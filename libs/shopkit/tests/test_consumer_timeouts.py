"""Bounded patience, with a real consumer on real Kafka and PostgreSQL: an event whose handler
times out on every attempt while the database answers goes to the dead letters with its reason
after `consumer_timeout_patience_s` (a metric and a log line say so) and its partition moves on;
when every handler times out (the database is what fails), the event is waited out, never
dead-lettered. (Amounts outside int64 are refused when read, before any handler.)"""

import json
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY
from sqlalchemy import BigInteger, Column, MetaData, Table, insert, select, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shop_contracts import Envelope, PaymentCompleted, topics
from shopkit.database.engine import create_engine, session_factory
from shopkit.database.uow import UnitOfWork
from shopkit.settings import ServiceSettings
from shopkit.testing import (
    KAFKA,
    collect,
    eventually,
    publish_envelope,
    running_consumer,
    topic_reader,
)

effects = Table(  # created by conftest.py
    "effects",
    MetaData(),
    Column("id", BigInteger, primary_key=True),
    Column("order_id", UUID(as_uuid=True)),
    Column("amount", BigInteger),
)
GROUP = "kit-timeouts"
SLOW = 13  # the amount whose handler times out on every attempt
Handler = Callable[[UnitOfWork, Any, Envelope], Awaitable[None]]


async def record_effect(uow: UnitOfWork, event: PaymentCompleted, _: Envelope) -> None:
    await uow.session.execute(insert(effects).values(order_id=event.order_id, amount=event.amount))


async def slow_when_13(uow: UnitOfWork, payment: PaymentCompleted, envelope: Envelope) -> None:
    """A query too slow for its statement timeout: a real PostgreSQL 57014 on every attempt."""
    if payment.amount == SLOW:
        await uow.session.execute(text("SET LOCAL statement_timeout = 5"))
        await uow.session.execute(text("SELECT pg_sleep(0.5)"))
    await record_effect(uow, payment, envelope)


def event(order_id: uuid.UUID, amount: int) -> Envelope:
    return Envelope.wrap(
        PaymentCompleted(order_id=order_id, user_id=1, amount=amount, balance_after=0),
        producer="test",
    )


async def amounts(sessions: async_sessionmaker[AsyncSession], order_id: uuid.UUID) -> list[int]:
    async with sessions() as s:
        rows = await s.scalars(
            select(effects.c.amount).where(effects.c.order_id == order_id).order_by(effects.c.id)
        )
        return [int(a) for a in rows]


def timed_out_dead_letters() -> float:
    value = REGISTRY.get_sample_value("dead_lettered_timed_out_total", {"consumer": GROUP})
    return value or 0.0


def consumer(
    settings: ServiceSettings, sessions: async_sessionmaker[AsyncSession], handler: Handler
) -> AbstractAsyncContextManager[AIOKafkaProducer]:
    return running_consumer(
        settings,
        sessions,
        {PaymentCompleted: handler},
        group_id=GROUP,
        topics=[topics.PAYMENT_EVENTS],
    )


async def test_a_handler_timing_out_on_every_attempt_is_dead_lettered_and_the_partition_moves_on(
    settings: ServiceSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    patient = settings.model_copy(update={"consumer_timeout_patience_s": 0.3})
    order_id = uuid.uuid4()
    slow, after = event(order_id, SLOW), event(order_id, 14)  # one key: one partition, in order
    before = timed_out_dead_letters()
    with structlog.testing.capture_logs() as logs:
        async with (
            topic_reader(settings.topic(topics.DEAD_LETTER)) as dead_letters,
            consumer(patient, sessions, slow_when_13),
        ):
            await publish_envelope(settings.topic(topics.PAYMENT_EVENTS), slow, after)
            await eventually(lambda: amounts(sessions, order_id), timeout_s=60)
            [dead] = await collect(dead_letters, lambda records: len(records) >= 1)
    assert await amounts(sessions, order_id) == [14]  # the event after it was handled
    assert Envelope.model_validate_json(dead.value).event_id == slow.event_id
    headers = {k: bytes(v).decode() for k, v in dead.headers}
    assert headers["dlq.consumer"] == GROUP
    assert headers["dlq.error"].startswith("timed out on every attempt for ")
    assert "statement timeout" in headers["dlq.error"]
    assert int(headers["dlq.attempts"]) >= 2
    assert timed_out_dead_letters() == before + 1
    [said] = [line for line in logs if line["event"] == "handler_timed_out_on_every_attempt"]
    assert said["log_level"] == "error"
    assert said["timed_out_s"] > 0.3
    assert "statement timeout" in said["error"]


async def test_every_handler_timing_out_is_an_outage_waited_out_not_dead_lettered(
    settings: ServiceSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Every event's first step (its claim in processed_events) times out: a table lock held
    elsewhere, statement timeout 200 ms. The handler times out on every attempt for longer than
    the patience, but so does the consumer's probe: it is waited out, then handled once."""
    patient = settings.model_copy(
        update={"consumer_timeout_patience_s": 0.3, "db_statement_timeout_ms": 200}
    )
    engine = create_engine(patient)
    order_id = uuid.uuid4()
    before = timed_out_dead_letters()
    try:
        with structlog.testing.capture_logs() as logs:
            async with (
                topic_reader(settings.topic(topics.DEAD_LETTER)) as dead_letters,
                consumer(patient, session_factory(engine), record_effect),
            ):
                async with sessions() as locker, locker.begin():
                    await locker.execute(text("LOCK TABLE processed_events IN SHARE MODE"))
                    await publish_envelope(
                        settings.topic(topics.PAYMENT_EVENTS), event(order_id, 7)
                    )

                    async def probe_failed() -> bool:
                        return any(
                            line["event"] == "handler_timing_out_while_infrastructure_fails"
                            for line in logs
                        )

                    await eventually(probe_failed, timeout_s=60)
                    assert await amounts(sessions, order_id) == []
                # the lock is gone: the database works again for every event
                await eventually(lambda: amounts(sessions, order_id), timeout_s=60)
                late = await dead_letters.getmany(timeout_ms=500)
    finally:
        await engine.dispose()
    assert not any(late.values())
    assert await amounts(sessions, order_id) == [7]
    assert timed_out_dead_letters() == before
    assert not [line for line in logs if line["event"] == "handler_timed_out_on_every_attempt"]


async def test_an_amount_outside_int64_is_dead_lettered_at_once_never_handled(
    settings: ServiceSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Refused at the door (shop_contracts bounds it): dead-lettered on reading, without an
    attempt, and the event after it is handled."""
    order_id = uuid.uuid4()
    handled: list[int] = []

    async def handler(uow: UnitOfWork, payment: PaymentCompleted, envelope: Envelope) -> None:
        handled.append(payment.amount)
        await record_effect(uow, payment, envelope)

    huge = json.loads(event(order_id, 1).model_dump_json())
    huge["payload"]["amount"] = 2**63
    async with (
        topic_reader(settings.topic(topics.DEAD_LETTER)) as dead_letters,
        consumer(settings, sessions, handler),
    ):
        producer = AIOKafkaProducer(bootstrap_servers=KAFKA)
        await producer.start()
        try:
            await producer.send_and_wait(
                settings.topic(topics.PAYMENT_EVENTS),
                json.dumps(huge).encode(),
                key=str(order_id).encode(),
            )
        finally:
            await producer.stop()
        await publish_envelope(settings.topic(topics.PAYMENT_EVENTS), event(order_id, 2))
        await eventually(lambda: amounts(sessions, order_id), timeout_s=60)
        [dead] = await collect(dead_letters, lambda records: len(records) >= 1)
    headers = {k: bytes(v).decode() for k, v in dead.headers}
    assert headers["dlq.error"].startswith("invalid PaymentCompleted")
    assert "amount" in headers["dlq.error"]
    assert "dlq.attempts" not in headers  # no attempt: read, refused, dead-lettered
    assert handled == [2]
    assert await amounts(sessions, order_id) == [2]

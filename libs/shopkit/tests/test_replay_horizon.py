"""An event replayed from the dead letters as late as the topics' retention allows changes
nothing where a saga step handled it: its claim is kept longer than that, through the retention
pruning. Against real Kafka and PostgreSQL; "later" is made by ageing the claim, not by waiting."""

import io
import uuid
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shop_contracts import PaymentCompleted, topics
from shopkit.database.retention import prune
from shopkit.messaging.deadletter import dead_letter
from shopkit.ops.deadletters import run
from shopkit.settings import ServiceSettings
from shopkit.testing import collect, eventually, publish_envelope, running_consumer, topic_reader

from .conftest import effects, payment_event, record_effect


async def _effects(sessions: async_sessionmaker[AsyncSession], order_id: uuid.UUID) -> list[int]:
    async with sessions() as s:
        rows = await s.execute(
            select(effects.c.amount).where(effects.c.order_id == order_id).order_by(effects.c.id)
        )
        return [int(amount) for amount in rows.scalars()]


async def _age_claim(
    sessions: async_sessionmaker[AsyncSession], event_id: uuid.UUID, days: int
) -> int:
    async with sessions() as s, s.begin():
        result: Any = await s.execute(
            text(
                "UPDATE processed_events SET processed_at = now() - make_interval(days => :days)"
                " WHERE event_id = :id"
            ),
            {"days": days, "id": event_id},
        )
        return int(result.rowcount)


async def _claims(sessions: async_sessionmaker[AsyncSession], event_id: uuid.UUID) -> int:
    async with sessions() as s:
        query = text("SELECT count(*) FROM processed_events WHERE event_id = :id")
        return int(await s.scalar(query, {"id": event_id}) or 0)


async def test_a_dead_letter_replayed_at_the_replay_horizon_is_not_handled_twice(
    settings: ServiceSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    order_id = uuid.uuid4()
    # one key: one partition, in order
    paid, later = payment_event(order_id, 1), payment_event(order_id, 2)
    topic = settings.topic(topics.PAYMENT_EVENTS)
    async with running_consumer(
        settings,
        sessions,
        {PaymentCompleted: record_effect},
        group_id="kit-horizon",
        topics=[topics.PAYMENT_EVENTS],
    ) as producer:
        await publish_envelope(topic, paid)
        await eventually(lambda: _effects(sessions, order_id))
        # Another consumer of the topic gave up on the same message.
        async with topic_reader(topic) as reader:
            [record] = await collect(reader, lambda seen: len(seen) == 1)
        await dead_letter(producer, settings, record, consumer="another", error="bug #9")

        # As late as a replay can come, after the retention has pruned what it may.
        assert await _age_claim(sessions, paid.event_id, settings.replay_horizon_days) == 1
        await prune(sessions, settings)
        assert await _claims(sessions, paid.event_id) == 1

        out = io.StringIO()
        assert await run(["replay", "--all"], settings, out) == 0
        assert out.getvalue() == "replayed 1 dead letter(s)\n"
        await publish_envelope(topic, later)  # after the replay, on its partition

        async def later_handled() -> bool:
            return 2 in await _effects(sessions, order_id)

        await eventually(later_handled)
    assert await _effects(sessions, order_id) == [1, 2]

    # Past the claims' retention the pruning does forget it (the age above was real).
    await _age_claim(sessions, paid.event_id, settings.processed_events_retention_days + 1)
    await prune(sessions, settings)
    assert await _claims(sessions, paid.event_id) == 0
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(effects)) == 2

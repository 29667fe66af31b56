"""A dead letter replayed any time within the topics' retention changes nothing where the event
was already counted: the worker's claims (processed_events in the ranking DB) outlive every
replay the retention allows, and the retention pruning keeps them that long. "Later" is made by
ageing the claims, not by waiting."""

import io
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import asyncpg

from ranking.config import Settings
from shop_contracts import Envelope, OrderPaid, topics
from shopkit.database.engine import create_engine, session_factory
from shopkit.database.retention import prune
from shopkit.messaging.deadletter import dead_letter
from shopkit.messaging.kafka import make_producer
from shopkit.ops.deadletters import run
from shopkit.testing import asyncpg_dsn, collect, eventually, topic_reader

KST = timezone(timedelta(hours=9))
Sold = dict[tuple[date, int], int]


async def _dead_lettered_by_another_consumer(settings: Settings, envelope: Envelope) -> None:
    """The relay, say, gave up on the very message the ranking counted."""
    async with topic_reader(settings.topic(topics.ORDER_EVENTS)) as reader:
        records = await collect(reader, lambda seen: any(r.key == envelope.key for r in seen))
    record = next(r for r in records if r.key == envelope.key)
    producer = make_producer(settings)
    await producer.start()
    try:
        await dead_letter(
            producer, settings, record, consumer="order.dataplatform-relay", error="HTTP 422"
        )
    finally:
        await producer.stop()


async def _age_claims(settings: Settings, days: int, event_ids: list[UUID]) -> None:
    db = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        await db.execute(
            "UPDATE processed_events SET processed_at = now() - make_interval(days => $1)"
            " WHERE event_id = ANY($2::uuid[])",
            days,
            event_ids,
        )
    finally:
        await db.close()


async def _claimed(settings: Settings, event_ids: list[UUID]) -> set[UUID]:
    db = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        rows = await db.fetch(
            "SELECT event_id FROM processed_events WHERE event_id = ANY($1::uuid[])", event_ids
        )
    finally:
        await db.close()
    return {r["event_id"] for r in rows}


async def _pruned(settings: Settings) -> dict[str, int]:
    """What the worker's retention timer does, now."""
    engine = create_engine(settings)
    try:
        return await prune(session_factory(engine), settings)
    finally:
        await engine.dispose()


async def test_an_order_paid_replayed_from_the_dead_letters_days_later_is_not_counted_twice(
    settings: Settings,
    worker: Any,
    paid: Callable[..., OrderPaid],
    publish_paid: Callable[..., Awaitable[list[Envelope]]],
    sold: Callable[[list[int]], Awaitable[Sold]],
    new_products: Callable[[int], list[int]],
    same_partition_orders: Callable[[int], list[UUID]],
) -> None:
    product, marker, gone = new_products(3)
    day = date(2024, 9, 1)
    at = datetime(2024, 9, 1, 12, 0, tzinfo=KST)
    first, last, old = same_partition_orders(3)
    [envelope, forgotten] = await publish_paid(
        paid(at, [(product, 3)], order_id=first), paid(at, [(gone, 1)], order_id=old)
    )

    async def both_counted() -> bool:
        return await sold([product, gone]) == {(day, product): 3, (day, gone): 1}

    await eventually(both_counted, timeout_s=90)
    await _dead_lettered_by_another_consumer(settings, envelope)

    # Later: as late as a letter can still be replayed (the replay horizon: read within the
    # topic's retention, replayed within the dead-letter topic's), and the retention has run.
    await _age_claims(settings, settings.replay_horizon_days, [envelope.event_id])
    # The pruning does forget what is older than its retention (so the ages here are real).
    await _age_claims(settings, settings.processed_events_retention_days + 1, [forgotten.event_id])
    assert (await _pruned(settings))["processed_events"] == 1
    assert await _claimed(settings, [envelope.event_id, forgotten.event_id]) == {envelope.event_id}

    out = io.StringIO()
    assert await run(["replay", "--all", "--order", str(first)], settings, out) == 0
    assert out.getvalue() == "replayed 1 dead letter(s)\n"
    # The same partition, after the replay: once it is counted, the replay has been seen.
    await publish_paid(paid(at, [(marker, 1)], order_id=last))

    async def marker_counted() -> bool:
        return bool(await sold([marker]))

    await eventually(marker_counted, timeout_s=90)
    assert await sold([product]) == {(day, product): 3}

"""A dead letter replayed to the order topic changes nothing where the sale was already counted:
the replay is a copy at another offset, and the worker knows the event id for as long as it
counts the sale (tests/unit/test_bounded_state.py shows that lifetime against the clock)."""

import io
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from ranking.config import Settings
from shop_contracts import Envelope, OrderPaid, topics
from shopkit.messaging.deadletter import dead_letter
from shopkit.messaging.kafka import make_producer
from shopkit.ops.deadletters import run
from shopkit.testing import collect, eventually, topic_reader

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


async def test_an_order_paid_replayed_from_the_dead_letters_is_not_counted_twice(
    settings: Settings,
    worker: Any,
    paid: Callable[..., OrderPaid],
    publish_paid: Callable[..., Awaitable[list[Envelope]]],
    sold: Callable[[list[int]], Awaitable[Sold]],
    new_products: Callable[[int], list[int]],
    same_partition_orders: Callable[[int], list[UUID]],
) -> None:
    product, marker = new_products(2)
    day = date(2024, 9, 1)
    at = datetime(2024, 9, 1, 12, 0, tzinfo=KST)
    first, last = same_partition_orders(2)
    [envelope] = await publish_paid(paid(at, [(product, 3)], order_id=first))

    async def product_counted() -> bool:
        return bool(await sold([product]))

    await eventually(product_counted, timeout_s=90)
    await _dead_lettered_by_another_consumer(settings, envelope)

    out = io.StringIO()
    assert await run(["replay", "--all", "--order", str(first)], settings, out) == 0
    assert out.getvalue() == "replayed 1 dead letter(s)\n"
    # The same partition, after the replay: once it is counted, the replay has been seen.
    await publish_paid(paid(at, [(marker, 1)], order_id=last))

    async def marker_counted() -> bool:
        return bool(await sold([marker]))

    await eventually(marker_counted, timeout_s=90)
    assert await sold([product]) == {(day, product): 3}

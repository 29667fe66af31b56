"""A dead letter replayed to the order topic changes nothing where the sale was already counted,
however long after: a replay is for the consumer that gave up on the message, and the worker
skips one meant for another consumer unread (it counted that sale when it first came, or
dead-lettered it in a letter of its own). Its own letters, replayed, are counted once."""

import io
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace
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
    await _dead_letter_as(settings, record, "order.dataplatform-relay")


async def _dead_letter_as(settings: Settings, record: Any, consumer: str) -> None:
    """Dead-letters `record` (anything with a ConsumerRecord's fields) as `consumer` does."""
    producer = make_producer(settings)
    await producer.start()
    try:
        await dead_letter(producer, settings, record, consumer=consumer, error="HTTP 422")
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

    argv = ["replay", "--all", "--order", str(first)]
    await _replayed_then_marker(settings, publish_paid, paid, sold, argv, last, marker)
    assert await sold([product]) == {(day, product): 3}


async def _letter(settings: Settings, envelope: Envelope, consumer: str) -> None:
    """A dead letter of `envelope` as `consumer` writes one, for a message of ORDER_EVENTS the
    worker may never have seen (its event id long forgotten, say)."""
    record = SimpleNamespace(
        topic=settings.topic(topics.ORDER_EVENTS),
        partition=0,
        offset=0,
        key=envelope.key,
        value=envelope.model_dump_json().encode(),
        headers=[("event_type", b"OrderPaid")],
    )
    await _dead_letter_as(settings, record, consumer)


async def _replayed_then_marker(
    settings: Settings,
    publish_paid: Callable[..., Awaitable[list[Envelope]]],
    paid: Callable[..., OrderPaid],
    sold: Callable[[list[int]], Awaitable[Sold]],
    argv: list[str],
    marker_order: UUID,
    marker: int,
) -> None:
    """Replays one letter, then waits until an order behind it (same partition) is counted:
    once that is counted, the replay has been seen."""
    out = io.StringIO()
    assert await run(argv, settings, out) == 0
    assert out.getvalue() == "replayed 1 dead letter(s)\n"
    at = datetime(2024, 9, 2, 12, 0, tzinfo=KST)
    await publish_paid(paid(at, [(marker, 1)], order_id=marker_order))

    async def marker_counted() -> bool:
        return bool(await sold([marker]))

    await eventually(marker_counted, timeout_s=90)


async def test_a_replay_for_another_consumer_is_skipped_however_long_ago_the_sale_was_seen(
    settings: Settings,
    worker: Any,
    paid: Callable[..., OrderPaid],
    publish_paid: Callable[..., Awaitable[list[Envelope]]],
    sold: Callable[[list[int]], Awaitable[Sold]],
    new_products: Callable[[int], list[int]],
    same_partition_orders: Callable[[int], list[UUID]],
) -> None:
    """The worker has never seen this event id (as if it had been forgotten days ago): what
    keeps the replay from being counted is whom it is for, not the worker's memory."""
    product, marker = new_products(2)
    order, marker_order = same_partition_orders(2)
    envelope = Envelope.wrap(
        paid(datetime(2024, 9, 2, 9, 0, tzinfo=KST), [(product, 5)], order_id=order),
        producer="test",
    )
    await _letter(settings, envelope, consumer="order.dataplatform-relay")
    argv = ["replay", "--all", "--order", str(order)]
    await _replayed_then_marker(settings, publish_paid, paid, sold, argv, marker_order, marker)
    assert await sold([product]) == {}


async def test_its_own_letter_replayed_is_counted_once_even_when_replayed_again(
    settings: Settings,
    worker: Any,
    paid: Callable[..., OrderPaid],
    publish_paid: Callable[..., Awaitable[list[Envelope]]],
    sold: Callable[[list[int]], Awaitable[Sold]],
    new_products: Callable[[int], list[int]],
    same_partition_orders: Callable[[int], list[UUID]],
) -> None:
    """A letter the worker wrote itself (say it could not read the message until a fix was
    deployed): the replay is for it, so it is counted; a second replay soon after is a copy."""
    product, marker, marker2 = new_products(3)
    order, marker_order, marker_order2 = same_partition_orders(3)
    envelope = Envelope.wrap(
        paid(datetime(2024, 9, 2, 10, 0, tzinfo=KST), [(product, 5)], order_id=order),
        producer="test",
    )
    await _letter(settings, envelope, consumer=settings.stream_app_id)
    argv = ["replay", "--all", "--order", str(order)]
    await _replayed_then_marker(settings, publish_paid, paid, sold, argv, marker_order, marker)
    assert await sold([product]) == {(date(2024, 9, 2), product): 5}
    await _replayed_then_marker(
        settings, publish_paid, paid, sold, [*argv, "--again"], marker_order2, marker2
    )
    assert await sold([product]) == {(date(2024, 9, 2), product): 5}

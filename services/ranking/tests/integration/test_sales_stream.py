"""The Faust worker against real Kafka: windows by the event's own time in Seoul, each event
counted once, and nothing lost or doubled when the worker is killed and restarted."""

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from ranking.config import Settings
from shop_contracts import Envelope, OrderPaid, topics
from shopkit.messaging.kafka import EVENT_TYPE_HEADER
from shopkit.testing import asyncpg_dsn, collect, eventually, publish_envelope, topic_reader

KST = timezone(timedelta(hours=9))
Sold = dict[tuple[date, int], int]
SoldProbe = Callable[[list[int]], Awaitable[Sold]]
Paid = Callable[..., OrderPaid]
Publish = Callable[..., Awaitable[list[Envelope]]]


def becomes(sold: SoldProbe, expected: Sold) -> Callable[[], Awaitable[bool]]:
    products = sorted({p for _, p in expected})

    async def check() -> bool:
        return await sold(products) == expected

    return check


def counted(sold: SoldProbe, product_id: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool(await sold([product_id]))

    return check


async def test_the_event_time_in_seoul_decides_the_day_not_the_processing_time(
    worker: Any,
    paid: Paid,
    publish_paid: Publish,
    sold: SoldProbe,
    new_products: Callable[[int], list[int]],
) -> None:
    a, b = new_products(2)
    await publish_paid(
        paid(datetime(2024, 5, 9, 23, 30, tzinfo=KST), [(a, 2)]),
        # 00:30 in Seoul is still 2024-05-09 in UTC: it belongs to the 10th
        paid(datetime(2024, 5, 10, 0, 30, tzinfo=KST), [(a, 3), (b, 1)]),
        paid(datetime(2024, 5, 10, 14, 59, tzinfo=UTC), [(b, 4)]),  # 23:59 in Seoul
    )
    expected = {(date(2024, 5, 9), a): 2, (date(2024, 5, 10), a): 3, (date(2024, 5, 10), b): 5}
    await eventually(becomes(sold, expected), timeout_s=90)


async def test_an_event_published_twice_and_a_product_listed_twice_are_counted_once(
    settings: Settings,
    worker: Any,
    paid: Paid,
    publish_paid: Publish,
    sold: SoldProbe,
    new_products: Callable[[int], list[int]],
    same_partition_orders: Callable[[int], list[UUID]],
) -> None:
    product, marker = new_products(2)
    at = datetime(2024, 6, 1, 12, 0, tzinfo=KST)
    first, last = same_partition_orders(2)
    order = Envelope.wrap(paid(at, [(product, 2), (product, 3)], order_id=first), producer="order")
    topic = settings.topic(topics.ORDER_EVENTS)
    await publish_envelope(topic, order, order)
    await publish_envelope(topic, order)
    # the same partition, after the copies: once it is counted, the copies have been seen
    await publish_paid(paid(at, [(marker, 1)], order_id=last))
    await eventually(counted(sold, marker), timeout_s=90)
    assert await sold([product, marker]) == {
        (date(2024, 6, 1), product): 5,
        (date(2024, 6, 1), marker): 1,
    }


async def test_a_killed_worker_comes_back_with_every_count_from_the_changelog(
    settings: Settings,
    worker: Any,
    paid: Paid,
    publish_paid: Publish,
    sold: SoldProbe,
    new_products: Callable[[int], list[int]],
    same_partition_orders: Callable[[int], list[UUID]],
) -> None:
    tea, coffee, marker = new_products(3)
    day = date(2024, 7, 1)
    at = datetime(2024, 7, 1, 9, 0, tzinfo=KST)
    ids = same_partition_orders(5)
    await publish_paid(
        paid(at, [(tea, 1)], order_id=ids[0]),
        paid(at, [(tea, 2), (coffee, 4)], order_id=ids[1]),
        paid(at + timedelta(hours=1), [(tea, 3)], order_id=ids[2]),
    )
    await eventually(becomes(sold, {(day, tea): 6, (day, coffee): 4}), timeout_s=90)

    worker.kill()  # SIGKILL; offsets are committed only every 30 s, so they are behind
    await publish_paid(paid(at, [(tea, 10)], order_id=ids[3]))  # while it is down
    await _forget_mirror(settings, [tea, coffee])  # only the changelog remembers now
    worker.start()
    await worker.ready()

    await publish_paid(paid(at, [(marker, 1)], order_id=ids[4]))
    await eventually(counted(sold, marker), timeout_s=120)
    assert await sold([tea, coffee]) == {(day, tea): 16, (day, coffee): 4}


@pytest.mark.xfail(
    strict=False,
    reason="known gap, open: under CPU load (the whole suite on 2 cores) a worker restarted "
    "within its first commit interval sometimes skips the orders published while it was down "
    "(it failed once, in a whole-suite run; alone it passed every time); see the issue 19 note",
)
async def test_a_restarted_worker_counts_a_backlog_published_while_it_was_down(
    settings: Settings,
    worker: Any,
    paid: Paid,
    publish_paid: Publish,
    sold: SoldProbe,
    new_products: Callable[[int], list[int]],
    same_partition_orders: Callable[[int], list[UUID]],
) -> None:
    """Several new orders behind the replayed ones: the agent must take them all while Faust
    settles its partitions (an agent that waited on a database per message lost some)."""
    tea, marker = new_products(2)
    at = datetime(2024, 7, 2, 9, 0, tzinfo=KST)
    ids = same_partition_orders(8)
    await publish_paid(*[paid(at, [(tea, 1)], order_id=i) for i in ids[:2]])
    await eventually(becomes(sold, {(date(2024, 7, 2), tea): 2}), timeout_s=90)

    worker.kill()
    await publish_paid(*[paid(at, [(tea, 10)], order_id=i) for i in ids[2:7]])
    worker.start()
    await worker.ready()

    await publish_paid(paid(at, [(marker, 1)], order_id=ids[7]))
    await eventually(counted(sold, marker), timeout_s=120)
    assert await sold([tea]) == {(date(2024, 7, 2), tea): 52}


async def test_an_invalid_sale_is_dead_lettered_with_its_own_headers(
    settings: Settings,
    worker: Any,
    paid: Paid,
    sold: SoldProbe,
    new_products: Callable[[int], list[int]],
) -> None:
    """The dead letter keeps the message's headers (its trace context among them) for a replay."""
    [product] = new_products(1)
    broken = Envelope.wrap(
        paid(datetime(2024, 8, 1, 10, 0, tzinfo=KST), [(product, 1)]), producer="order"
    )
    value = broken.model_dump(mode="json")
    value["payload"]["lines"][0]["quantity"] = -3  # no such sale
    traceparent = f"00-{uuid4().hex}-{uuid4().hex[:16]}-01".encode()

    def ours(record: Any) -> bool:
        return dict(record.headers).get("traceparent") == traceparent

    async with (
        AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers) as producer,
        topic_reader(settings.topic(topics.DEAD_LETTER)) as reader,
    ):
        await producer.send_and_wait(
            settings.topic(topics.ORDER_EVENTS),
            value=json.dumps(value).encode(),
            key=broken.key,
            headers=[(EVENT_TYPE_HEADER, b"OrderPaid"), ("traceparent", traceparent)],
        )
        letters = await collect(reader, lambda seen: any(ours(r) for r in seen), timeout_s=90)
    [letter] = [r for r in letters if ours(r)]
    headers = dict(letter.headers)
    assert headers[EVENT_TYPE_HEADER] == b"OrderPaid"
    assert headers["dlq.topic"].decode() == settings.topic(topics.ORDER_EVENTS)
    assert b"invalid OrderPaid" in headers["dlq.error"]
    assert json.loads(letter.value) == value
    assert await sold([product]) == {}


async def _forget_mirror(settings: Settings, product_ids: list[int]) -> None:
    db = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        await db.execute(
            "DELETE FROM daily_sales WHERE product_id = ANY($1::bigint[])", product_ids
        )
    finally:
        await db.close()

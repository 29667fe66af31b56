"""The reservation saga step against real Kafka and PostgreSQL: events in, events out."""

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
import httpx
import orjson
import pytest
from prometheus_client import REGISTRY

from product.config import Settings
from product.service.reservations import release_stock, reserve_stock
from shop_contracts import (
    Envelope,
    Event,
    OrderCreated,
    OrderFailed,
    topics,
)
from shopkit.database.engine import create_engine, session_factory
from shopkit.database.uow import UnitOfWork
from shopkit.testing import (
    asyncpg_dsn,
    collect,
    publish,
    publish_envelope,
    topic_reader,
)

from ..conftest import BUYER, NewProduct, order_created, order_failed

Drain = Callable[[], Awaitable[None]]
T = TypeVar("T")

UNKNOWN_PRODUCT = 2**63 - 1


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def stock_events(records: list[Any], order_ids: set[uuid.UUID]) -> list[Envelope]:
    envelopes = [Envelope.model_validate(orjson.loads(r.value)) for r in records]
    return [e for e in envelopes if e.order_id in order_ids]


Deliver = Callable[..., Awaitable[None]]


@pytest.fixture
def delivered(settings: Settings, consumed_everything: Drain) -> Deliver:
    """`await delivered(*events)`: publishes order events on the order topic, in turn (an Event
    under a new event id, an Envelope as it is), and waits until the service consumed them."""

    async def deliver(*events: Event | Envelope) -> None:
        topic = settings.topic(topics.ORDER_EVENTS)
        for event in events:
            if isinstance(event, Envelope):
                await publish_envelope(topic, event)
            else:
                await publish(topic, event)
        await consumed_everything()

    return deliver


async def stock_answer(settings: Settings, order: OrderCreated) -> Envelope:
    """Publishes `order`; the service's answer to it on the stock topic."""
    async with topic_reader(settings.topic(topics.STOCK_EVENTS)) as reader:
        await publish(settings.topic(topics.ORDER_EVENTS), order)
        records = await collect(reader, lambda got: bool(stock_events(got, {order.order_id})))
    [event] = stock_events(records, {order.order_id})
    return event


async def staged(db: asyncpg.Connection, order: OrderCreated) -> int:
    """How many events the service staged in its outbox for `order`."""
    query = "SELECT count(*) FROM outbox WHERE key = $1"
    return int(await db.fetchval(query, str(order.order_id)))


async def stock_of(client: httpx.AsyncClient, product_id: int) -> int:
    stock: int = (await client.get(f"/products/{product_id}")).json()["stock"]
    return stock


async def stocks(db: asyncpg.Connection, *product_ids: int) -> dict[int, int]:
    rows = await db.fetch("SELECT id, stock FROM products WHERE id = ANY($1)", product_ids)
    return {r["id"]: r["stock"] for r in rows}


async def statuses(db: asyncpg.Connection, order_ids: set[uuid.UUID]) -> dict[str, int]:
    rows = await db.fetch(
        "SELECT status, count(*) FROM reservation_orders WHERE order_id = ANY($1) GROUP BY 1",
        list(order_ids),
    )
    return {r["status"]: r["count"] for r in rows}


def consumed(event_type: str, outcome: str) -> float:
    labels = {"consumer": "product.reservations", "event_type": event_type, "outcome": outcome}
    return REGISTRY.get_sample_value("events_consumed_total", labels) or 0.0


HELD = """
    SELECT p.stock, coalesce(sum(r.quantity) FILTER (WHERE r.status = 'RESERVED'), 0)::bigint
    FROM products p LEFT JOIN reservations r ON r.product_id = p.id
    WHERE p.id = $1 GROUP BY p.stock
"""
"""What is left and what reservations hold, read in one statement (one snapshot)."""


@asynccontextmanager
async def stock_watched(
    settings: Settings, product_id: int
) -> AsyncIterator[list[tuple[int, int]]]:
    """Samples (left, held by reservations) of a product on a connection of its own while the
    block runs."""
    seen: list[tuple[int, int]] = []
    stop = asyncio.Event()

    async def watch() -> None:
        db = await asyncpg.connect(asyncpg_dsn(settings.database_url))
        try:
            while not stop.is_set():
                row = await db.fetchrow(HELD, product_id)
                seen.append((row[0], row[1]))
                await asyncio.sleep(0.01)
        finally:
            await db.close()

    watcher = asyncio.create_task(watch())
    try:
        yield seen
    finally:
        stop.set()
        await watcher


async def test_1000_concurrent_orders_for_100_units_reserve_exactly_100_and_release_them_all(
    client: httpx.AsyncClient,
    settings: Settings,
    db: asyncpg.Connection,
    new_product: NewProduct,
    consumed_everything: Drain,
) -> None:
    product = await new_product(name="한정판 운동화", price=189_000, stock=100)
    pid = product["id"]
    orders = [order_created((pid, 1)) for _ in range(1_000)]
    ids = {o.order_id for o in orders}
    order_topic = settings.topic(topics.ORDER_EVENTS)

    async with stock_watched(settings, pid) as seen:
        async with topic_reader(settings.topic(topics.STOCK_EVENTS)) as reader:
            await asyncio.gather(
                *(
                    publish_envelope(
                        order_topic, *[Envelope.wrap(o, producer="order") for o in part]
                    )
                    for part in chunks(orders, 25)
                )
            )
            records = await collect(
                reader,
                lambda got: len({e.order_id for e in stock_events(got, ids)}) >= 1_000,
                timeout_s=120,
            )
        events = stock_events(records, ids)

        assert Counter(e.order_id for e in events) == Counter(ids)  # one outcome per order
        reserved = [e for e in events if e.event_type == "StockReserved"]
        rejected = [e for e in events if e.event_type == "StockRejected"]
        assert len(reserved) == 100
        assert len(rejected) == 900
        line = {"product_id": pid, "name": "한정판 운동화", "quantity": 1, "unit_price": 189_000}
        assert all(e.payload["reserved"] == [line] for e in reserved)
        assert all(e.payload["excluded"] == [] for e in reserved)
        excluded = [{"product_id": pid, "quantity": 1, "reason": "OUT_OF_STOCK"}]
        assert all(e.payload["excluded"] == excluded for e in rejected)
        assert await stock_of(client, pid) == 0
        assert await statuses(db, ids) == {"RESERVED": 100, "REJECTED": 900}

        # Every release delivered twice (the same envelope): the second copy changes nothing.
        handled = consumed("OrderFailed", "handled")
        duplicates = consumed("OrderFailed", "duplicate")
        releases = [Envelope.wrap(order_failed(o), producer="order") for o in orders]
        await asyncio.gather(
            *(
                publish_envelope(order_topic, *[e for env in part for e in (env, env)])
                for part in chunks(releases, 25)
            )
        )
        await consumed_everything()

    assert consumed("OrderFailed", "handled") - handled == 1_000
    assert consumed("OrderFailed", "duplicate") - duplicates >= 1_000
    assert await stock_of(client, pid) == 100
    assert await db.fetchrow(HELD, pid) == (100, 0)
    assert await statuses(db, ids) == {"RELEASED": 100, "REJECTED": 900}
    assert seen, "the watcher sampled nothing"
    assert all(left >= 0 for left, _ in seen), "stock went negative"
    assert all(left + held == 100 for left, held in seen), "stock leaked or appeared"


async def test_an_order_is_reserved_once_however_often_it_is_delivered(
    client: httpx.AsyncClient, db: asyncpg.Connection, new_product: NewProduct, delivered: Deliver
) -> None:
    product = await new_product(stock=10)
    order = order_created((product["id"], 3))
    envelope = Envelope.wrap(order, producer="order")
    # the same event twice, then the same fact again under another event id
    await delivered(envelope, envelope, order)

    assert await stock_of(client, product["id"]) == 7
    assert await staged(db, order) == 1
    lines = await db.fetch("SELECT quantity FROM reservations WHERE order_id = $1", order.order_id)
    assert [r["quantity"] for r in lines] == [3]


async def test_lines_are_reserved_or_excluded_with_their_reason_and_released_once(
    client: httpx.AsyncClient, settings: Settings, new_product: NewProduct, delivered: Deliver
) -> None:
    plenty = await new_product(name="plenty", price=1_000, stock=5)
    scarce = await new_product(name="scarce", price=2_000, stock=1)
    order = order_created(
        (UNKNOWN_PRODUCT, 1), (scarce["id"], 2), (plenty["id"], 3), user_coupon_id=9
    )
    event = await stock_answer(settings, order)

    assert event.event_type == "StockReserved"
    assert event.producer == "product"
    assert event.payload == {
        "order_id": str(order.order_id),
        "user_id": BUYER,
        "user_coupon_id": 9,
        "reserved": [
            {"product_id": plenty["id"], "name": "plenty", "quantity": 3, "unit_price": 1_000}
        ],
        "excluded": [
            {"product_id": scarce["id"], "quantity": 2, "reason": "OUT_OF_STOCK"},
            {"product_id": UNKNOWN_PRODUCT, "quantity": 1, "reason": "PRODUCT_NOT_FOUND"},
        ],
    }
    assert await stock_of(client, plenty["id"]) == 2
    assert await stock_of(client, scarce["id"]) == 1

    # the failure announced twice under two event ids: given back once, excluded lines untouched
    await delivered(order_failed(order), order_failed(order))
    assert await stock_of(client, plenty["id"]) == 5
    assert await stock_of(client, scarce["id"]) == 1


async def test_an_order_with_nothing_available_is_rejected_and_takes_nothing(
    client: httpx.AsyncClient,
    settings: Settings,
    new_product: NewProduct,
) -> None:
    scarce = await new_product(stock=1)
    order = order_created((scarce["id"], 2), (UNKNOWN_PRODUCT, 1))
    event = await stock_answer(settings, order)

    assert event.event_type == "StockRejected"
    assert event.payload == {
        "order_id": str(order.order_id),
        "user_id": BUYER,
        "excluded": [
            {"product_id": scarce["id"], "quantity": 2, "reason": "OUT_OF_STOCK"},
            {"product_id": UNKNOWN_PRODUCT, "quantity": 1, "reason": "PRODUCT_NOT_FOUND"},
        ],
    }
    assert await stock_of(client, scarce["id"]) == 1


async def test_an_order_that_failed_before_it_was_reserved_is_never_reserved(
    client: httpx.AsyncClient, db: asyncpg.Connection, new_product: NewProduct, delivered: Deliver
) -> None:
    product = await new_product(stock=4)
    order = order_created((product["id"], 2))
    await delivered(order_failed(order))  # handled before the late OrderCreated arrives
    await delivered(order)

    assert await stock_of(client, product["id"]) == 4
    status = "SELECT status FROM reservation_orders WHERE order_id = $1"
    assert await db.fetchval(status, order.order_id) == "RELEASED"
    assert await staged(db, order) == 0


async def test_racing_duplicate_deliveries_take_and_give_back_each_order_exactly_once(
    settings: Settings,
    db: asyncpg.Connection,
    new_product: NewProduct,
) -> None:
    """The saga steps raced straight against PostgreSQL, many more at once than the consumer
    runs, each order handled twice at the same time under different event ids (so only the
    reservation rows, not the consumer's event-id dedupe, can keep it to once), with lines of
    two products in either order (so a lock-order mistake would deadlock)."""
    first = (await new_product(stock=30))["id"]
    second = (await new_product(stock=20))["id"]
    either_order = [((first, 1), (second, 1)), ((second, 1), (first, 1))]
    orders = [order_created(*lines) for lines in either_order * 50]
    engine = create_engine(settings.model_copy(update={"db_pool_size": 40, "db_max_overflow": 0}))
    sessions = session_factory(engine)

    async def run(step: Any, event: OrderCreated | OrderFailed) -> None:
        async with UnitOfWork(sessions, "product") as uow:
            await step(uow, event, Envelope.wrap(event, producer="order"))
            await uow.commit()

    held = """SELECT product_id, sum(quantity) FROM reservations
              WHERE order_id = ANY($1) AND status = $2 GROUP BY 1"""
    ids = [o.order_id for o in orders]
    try:
        await asyncio.gather(*(run(reserve_stock, o) for o in orders for _ in range(2)))
        assert await stocks(db, first, second) == {first: 0, second: 0}
        assert dict(await db.fetch(held, ids, "RESERVED")) == {first: 30, second: 20}
        outcomes = "SELECT count(*) FROM outbox WHERE key = ANY($1)"
        assert await db.fetchval(outcomes, [str(i) for i in ids]) == 100

        await asyncio.gather(
            *(run(release_stock, order_failed(o)) for o in orders for _ in range(2))
        )
        assert await stocks(db, first, second) == {first: 30, second: 20}
        assert dict(await db.fetch(held, ids, "RELEASED")) == {first: 30, second: 20}
    finally:
        await engine.dispose()

"""The coupon's saga steps against real Kafka and PostgreSQL: StockReserved in, the priced order
or CouponRejected out; OrderFailed gives the coupon back."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from coupon.adapters.tables import OrderPricing
from coupon.config import Settings
from coupon.service.pricing import price_order
from shop_contracts import (
    Envelope,
    ExcludedLine,
    ExclusionReason,
    FailureReason,
    OrderFailed,
    ReservedLine,
    StockReserved,
    topics,
)
from shopkit.database.uow import UnitOfWork
from shopkit.ops.runtime import Runtime
from shopkit.testing import collect, eventually, publish, publish_envelope, topic_reader


@pytest.fixture(autouse=True)
def _service_runs(base_url: str) -> None:
    """The service, with its consumers, runs for every test here."""


def stock_reserved(
    user_id: int,
    user_coupon_id: int | None = None,
    lines: Sequence[tuple[int, int]] = ((2, 1_500), (1, 9_900)),
) -> StockReserved:
    return StockReserved(
        order_id=uuid.uuid4(),
        user_id=user_id,
        user_coupon_id=user_coupon_id,
        reserved=[
            ReservedLine(product_id=n, name=f"product {n}", quantity=q, unit_price=price)
            for n, (q, price) in enumerate(lines, start=1)
        ],
        excluded=[ExcludedLine(product_id=99, quantity=5, reason=ExclusionReason.OUT_OF_STOCK)],
    )


def order_failed(event: StockReserved) -> OrderFailed:
    return OrderFailed(
        order_id=event.order_id,
        user_id=event.user_id,
        reason=FailureReason.INSUFFICIENT_BALANCE,
        user_coupon_id=event.user_coupon_id,
    )


async def priced(settings: Settings, *orders: StockReserved) -> dict[uuid.UUID, Envelope]:
    """Publishes the orders' StockReserved at once; the coupon service's answer to each."""
    ids = {o.order_id for o in orders}

    def answers(records: list[Any]) -> dict[uuid.UUID, Envelope]:
        envelopes = (Envelope.model_validate(orjson.loads(r.value)) for r in records)
        return {e.order_id: e for e in envelopes if e.order_id in ids}

    async with topic_reader(settings.topic(topics.COUPON_EVENTS)) as reader:
        await asyncio.gather(*(publish(settings.topic(topics.STOCK_EVENTS), o) for o in orders))
        records = await collect(reader, lambda seen: len(answers(seen)) == len(ids))
    return answers(records)


Issue = Callable[..., Awaitable[int]]
Handled = Callable[[Envelope], Awaitable[None]]


@pytest.fixture
def issue(client: httpx.AsyncClient, new_coupon: Callable[..., Any]) -> Issue:
    """`issue(user_id, **coupon)`: a fresh coupon of that kind, issued to the user."""

    async def make(user_id: int, **coupon: Any) -> int:
        created = await new_coupon(**coupon)
        r = await client.post(f"/coupons/{created['id']}/issue", json={"user_id": user_id})
        assert r.status_code == 201
        user_coupon_id: int = r.json()["user_coupon_id"]
        return user_coupon_id

    return make


@pytest.fixture
def handled(db: asyncpg.Connection) -> Handled:
    """`await handled(envelope)`: waits until the coupon service has handled that event."""

    async def wait(envelope: Envelope) -> None:
        query = "SELECT count(*) FROM processed_events WHERE event_id = $1"
        await eventually(lambda: db.fetchval(query, envelope.event_id))

    return wait


async def held(client: httpx.AsyncClient, user_id: int, user_coupon_id: int) -> dict[str, Any]:
    items = (await client.get(f"/users/{user_id}/coupons")).json()["items"]
    (item,) = [i for i in items if i["user_coupon_id"] == user_coupon_id]
    return dict(item)


async def available_again(client: httpx.AsyncClient, user_id: int, user_coupon_id: int) -> None:
    """Waits until the user's coupon is given back (AVAILABLE)."""

    async def available() -> bool:
        return bool((await held(client, user_id, user_coupon_id))["status"] == "AVAILABLE")

    await eventually(available)


async def test_an_order_without_a_coupon_is_priced_at_its_reserved_subtotal(
    settings: Settings, user_id: int
) -> None:
    order = stock_reserved(user_id)
    (answer,) = (await priced(settings, order)).values()
    assert answer.event_type == "OrderPriced"
    assert answer.producer == "coupon"
    assert answer.payload == {
        "order_id": str(order.order_id),
        "user_id": user_id,
        "user_coupon_id": None,
        "subtotal": 12_900,  # 2 × 1,500 + 9,900; the excluded line is not charged
        "discount": 0,
        "total": 12_900,
    }


@pytest.mark.parametrize(
    ("coupon", "discount"),
    [
        ({"discount_type": "PERCENT", "discount_value": 10, "min_order_amount": 12_900}, 1_290),
        ({"discount_type": "PERCENT", "discount_value": 7}, 903),
        ({"discount_type": "FIXED", "discount_value": 3_000}, 3_000),
        ({"discount_type": "FIXED", "discount_value": 50_000}, 12_900),
    ],
)
async def test_a_valid_coupon_is_applied_and_held_by_the_order(
    settings: Settings,
    client: httpx.AsyncClient,
    issue: Issue,
    user_id: int,
    coupon: dict[str, Any],
    discount: int,
) -> None:
    user_coupon_id = await issue(user_id, **coupon)
    order = stock_reserved(user_id, user_coupon_id)
    (answer,) = (await priced(settings, order)).values()
    assert answer.event_type == "OrderPriced"
    assert answer.payload["user_coupon_id"] == user_coupon_id
    assert (answer.payload["subtotal"], answer.payload["discount"], answer.payload["total"]) == (
        12_900,
        discount,
        12_900 - discount,
    )
    item = await held(client, user_id, user_coupon_id)
    assert (item["status"], item["used_order_id"]) == ("USED", str(order.order_id))


async def test_orders_naming_one_coupon_at_the_same_moment_get_it_once(
    settings: Settings, client: httpx.AsyncClient, issue: Issue, user_id: int
) -> None:
    user_coupon_id = await issue(user_id, discount_type="FIXED", discount_value=3_000)
    orders = [stock_reserved(user_id, user_coupon_id) for _ in range(10)]
    answers = await priced(settings, *orders)
    winners = [a for a in answers.values() if a.event_type == "OrderPriced"]
    losers = [a for a in answers.values() if a.event_type == "CouponRejected"]
    assert len(winners) == 1
    assert winners[0].payload["discount"] == 3_000
    assert len(losers) == 9
    assert all(a.payload["reason"] == "COUPON_INVALID" for a in losers)
    assert all("already used" in a.payload["detail"] for a in losers)
    item = await held(client, user_id, user_coupon_id)
    assert item["used_order_id"] == str(winners[0].order_id)

    # the order that got it fails: the coupon is AVAILABLE again, and pays for a new order
    await publish(
        settings.topic(topics.ORDER_EVENTS),
        order_failed(next(o for o in orders if o.order_id == winners[0].order_id)),
    )
    await available_again(client, user_id, user_coupon_id)
    (again,) = (await priced(settings, stock_reserved(user_id, user_coupon_id))).values()
    assert again.event_type == "OrderPriced"
    assert again.payload["discount"] == 3_000


async def test_concurrent_pricing_transactions_take_a_coupon_once(
    runtime: Runtime, client: httpx.AsyncClient, issue: Issue, user_id: int
) -> None:
    """The database guard alone, without Kafka's scheduling: twenty transactions at once."""
    user_coupon_id = await issue(user_id, discount_type="FIXED", discount_value=500)
    orders = [stock_reserved(user_id, user_coupon_id) for _ in range(20)]

    async def handle(order: StockReserved) -> None:
        async with UnitOfWork(runtime.sessions, "coupon") as uow:
            await price_order(uow, order, Envelope.wrap(order, producer="test"))
            await uow.commit()

    await asyncio.gather(*(handle(o) for o in orders))
    async with runtime.sessions() as session:
        statuses = [(await session.get(OrderPricing, o.order_id)) for o in orders]
    assert sorted(p.status for p in statuses if p is not None) == ["PRICED"] + ["REJECTED"] * 19
    winner = next(p for p in statuses if p is not None and p.status == "PRICED")
    item = await held(client, user_id, user_coupon_id)
    assert item["used_order_id"] == str(winner.order_id)


async def test_a_failed_order_gives_its_coupon_back_once(
    settings: Settings, client: httpx.AsyncClient, issue: Issue, handled: Handled, user_id: int
) -> None:
    user_coupon_id = await issue(user_id, discount_type="FIXED", discount_value=1_000)
    first = stock_reserved(user_id, user_coupon_id)
    await priced(settings, first)
    failed = Envelope.wrap(order_failed(first), producer="order")
    await publish_envelope(settings.topic(topics.ORDER_EVENTS), failed, failed)
    await available_again(client, user_id, user_coupon_id)
    second = stock_reserved(user_id, user_coupon_id)
    (answer,) = (await priced(settings, second)).values()
    assert answer.event_type == "OrderPriced"

    # the same failure again, as a new event: the coupon now belongs to the second order
    late = await publish(settings.topic(topics.ORDER_EVENTS), order_failed(first))
    await handled(late)
    item = await held(client, user_id, user_coupon_id)
    assert (item["status"], item["used_order_id"]) == ("USED", str(second.order_id))


@pytest.mark.parametrize(
    ("case", "why"),
    [
        ("another user's", "belongs to another user"),
        ("expired", "expired"),
        ("below the minimum", "minimum order amount"),
        ("unknown", "does not exist"),
        ("used by another order", "already used"),
    ],
)
async def test_an_invalid_coupon_rejects_the_order_and_stays_as_it_was(
    settings: Settings,
    client: httpx.AsyncClient,
    issue: Issue,
    db: asyncpg.Connection,
    user_id: int,
    case: str,
    why: str,
) -> None:
    user_coupon_id = await issue(user_id, min_order_amount=20_000 if "minimum" in case else 0)
    buyer, named = user_id, user_coupon_id
    if case == "another user's":
        buyer = user_id + 1
    elif case == "expired":
        await db.execute(
            "UPDATE user_coupons SET issued_at = now() - interval '8 days',"
            " expires_at = now() - interval '1 day' WHERE id = $1",
            user_coupon_id,
        )
    elif case == "unknown":
        named = 2**62 + user_coupon_id
    elif case == "used by another order":
        await db.execute(
            "UPDATE user_coupons SET used_order_id = $1 WHERE id = $2",
            uuid.uuid4(),
            user_coupon_id,
        )
    before = await held(client, user_id, user_coupon_id)

    order = stock_reserved(buyer, named)
    (answer,) = (await priced(settings, order)).values()
    assert answer.event_type == "CouponRejected"
    assert answer.payload["user_coupon_id"] == named
    assert answer.payload["reason"] == "COUPON_INVALID"
    assert why in answer.payload["detail"]
    assert await held(client, user_id, user_coupon_id) == before


async def test_stock_reserved_after_the_order_failed_is_ignored(
    settings: Settings,
    client: httpx.AsyncClient,
    issue: Issue,
    handled: Handled,
    db: asyncpg.Connection,
    user_id: int,
) -> None:
    user_coupon_id = await issue(user_id)
    order = stock_reserved(user_id, user_coupon_id)
    await handled(await publish(settings.topic(topics.ORDER_EVENTS), order_failed(order)))

    late = await publish(settings.topic(topics.STOCK_EVENTS), order)
    await handled(late)
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE key = $1", str(order.order_id)) == 0
    assert (await held(client, user_id, user_coupon_id))["status"] == "AVAILABLE"


async def test_a_redelivered_stock_reserved_prices_the_order_once(
    settings: Settings, issue: Issue, handled: Handled, db: asyncpg.Connection, user_id: int
) -> None:
    user_coupon_id = await issue(user_id)
    order = stock_reserved(user_id, user_coupon_id)
    envelope = Envelope.wrap(order, producer="product")
    await publish_envelope(settings.topic(topics.STOCK_EVENTS), envelope, envelope)
    again = await publish(settings.topic(topics.STOCK_EVENTS), order)  # same fact, new event id
    await handled(again)
    await handled(envelope)
    staged = await db.fetch("SELECT event_type FROM outbox WHERE key = $1", str(order.order_id))
    assert [r["event_type"] for r in staged] == ["OrderPriced"]

"""The payment saga step against real Kafka and PostgreSQL: events in, events out."""

import asyncio
import uuid
from collections.abc import Awaitable

import asyncpg
import httpx
import orjson

from point.config import Settings
from point.main import create_app
from shop_contracts import Envelope, OrderFailed, OrderPriced, topics
from shop_contracts.events import FailureReason
from shopkit.testing import (
    asyncpg_dsn,
    collect,
    eventually,
    publish,
    publish_envelope,
    running_server,
    topic_reader,
    unique,
)


def priced(user_id: int, total: int) -> OrderPriced:
    return OrderPriced(
        order_id=uuid.uuid4(), user_id=user_id, subtotal=total, discount=0, total=total
    )


def payment_events(records: list, order_ids: set[uuid.UUID]) -> list[Envelope]:
    envelopes = [Envelope.model_validate(orjson.loads(r.value)) for r in records]
    return [e for e in envelopes if e.order_id in order_ids]


async def test_50_concurrent_orders_pay_exactly_what_the_balance_covers(
    client: httpx.AsyncClient, settings: Settings, user_id: int
) -> None:
    await client.post(f"/points/{user_id}/charge", json={"amount": 10_000})
    orders = [priced(user_id, 1_000) for _ in range(50)]
    ids = {o.order_id for o in orders}
    async with topic_reader(settings.topic(topics.PAYMENT_EVENTS)) as reader:
        await asyncio.gather(*(publish(settings.topic(topics.COUPON_EVENTS), o) for o in orders))
        records = await collect(reader, lambda seen: len(payment_events(seen, ids)) >= 50)
    outcomes = [e.event_type for e in payment_events(records, ids)]
    assert outcomes.count("PaymentCompleted") == 10
    assert outcomes.count("PaymentFailed") == 40
    assert (await client.get(f"/points/{user_id}")).json()["balance"] == 0
    history = (await client.get(f"/points/{user_id}/history")).json()["items"]
    assert [h["type"] for h in history].count("PAYMENT") == 10


async def test_a_redelivered_pay_event_pays_once(
    client: httpx.AsyncClient, settings: Settings, user_id: int
) -> None:
    await client.post(f"/points/{user_id}/charge", json={"amount": 5_000})
    envelope = Envelope.wrap(priced(user_id, 2_000), producer="coupon")
    # the same event twice, and a second event for the same order (another event id)
    await publish_envelope(settings.topic(topics.COUPON_EVENTS), envelope, envelope)
    again = Envelope.wrap(OrderPriced.model_validate(envelope.payload), producer="coupon")
    await publish_envelope(settings.topic(topics.COUPON_EVENTS), again)

    async def paid() -> bool:
        return (await client.get(f"/points/{user_id}")).json()["balance"] == 3_000

    await eventually(paid)
    await asyncio.sleep(1)
    assert (await client.get(f"/points/{user_id}")).json()["balance"] == 3_000


async def test_failed_order_is_refunded_once(
    client: httpx.AsyncClient, settings: Settings, user_id: int
) -> None:
    await client.post(f"/points/{user_id}/charge", json={"amount": 5_000})
    order = priced(user_id, 2_000)
    await publish(settings.topic(topics.COUPON_EVENTS), order)

    async def balance_is(n: int) -> bool:
        return (await client.get(f"/points/{user_id}")).json()["balance"] == n

    await eventually(lambda: balance_is(3_000))
    failed = OrderFailed(order_id=order.order_id, user_id=user_id, reason=FailureReason.TIMEOUT)
    envelope = Envelope.wrap(failed, producer="order")
    await publish_envelope(settings.topic(topics.ORDER_EVENTS), envelope, envelope)
    await publish(settings.topic(topics.ORDER_EVENTS), failed)  # same fact, new event id
    await eventually(lambda: balance_is(5_000))
    await asyncio.sleep(1)
    assert await balance_is(5_000)
    types = [h["type"] for h in (await client.get(f"/points/{user_id}/history")).json()["items"]]
    assert types == ["REFUND", "PAYMENT", "CHARGE"]


async def test_order_failed_before_pricing_is_never_paid(
    client: httpx.AsyncClient, settings: Settings, user_id: int
) -> None:
    await client.post(f"/points/{user_id}/charge", json={"amount": 5_000})
    order = priced(user_id, 2_000)
    await publish(
        settings.topic(topics.ORDER_EVENTS),
        OrderFailed(order_id=order.order_id, user_id=user_id, reason=FailureReason.TIMEOUT),
    )
    await asyncio.sleep(2)  # let the refund consumer record the cancellation first
    late = await publish(settings.topic(topics.COUPON_EVENTS), order)
    db = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        handled = "SELECT count(*) FROM processed_events WHERE event_id = $1"
        await eventually(lambda: db.fetchval(handled, late.event_id))
        status = await db.fetchval(
            "SELECT status FROM payments WHERE order_id = $1", order.order_id
        )
    finally:
        await db.close()
    assert status == "CANCELLED"
    assert (await client.get(f"/points/{user_id}")).json()["balance"] == 5_000


async def test_an_order_costing_nothing_is_paid_by_a_user_never_charged(
    client: httpx.AsyncClient, settings: Settings, user_id: int
) -> None:
    free = OrderPriced(
        order_id=uuid.uuid4(), user_id=user_id, subtotal=5_000, discount=5_000, total=0
    )
    async with topic_reader(settings.topic(topics.PAYMENT_EVENTS)) as reader:
        await publish(settings.topic(topics.COUPON_EVENTS), free)
        records = await collect(reader, lambda seen: bool(payment_events(seen, {free.order_id})))
    [outcome] = payment_events(records, {free.order_id})
    assert outcome.event_type == "PaymentCompleted"
    assert outcome.payload["amount"] == 0
    assert (await client.get(f"/points/{user_id}")).json()["balance"] == 0
    assert (await client.get(f"/points/{user_id}/history")).json()["items"] == []


async def test_a_refund_blocked_past_the_statement_timeout_is_applied_once_the_lock_goes(
    client: httpx.AsyncClient, settings: Settings, user_id: int
) -> None:
    """The balance row locked (a long transaction, a stuck operator session) longer than the
    statement timeout, while an OrderFailed asks for a refund: every attempt is cancelled by
    PostgreSQL (SQLSTATE 57014). The refund waits, is applied once the lock goes, and is never
    dead-lettered (it used to be, after about 1.4 s of retries)."""
    impatient = settings.model_copy(
        update={
            "kafka_topic_prefix": unique("t.point.") + ".",
            "db_statement_timeout_ms": 300,
            "run_migrations": False,
        }
    )
    await client.post(f"/points/{user_id}/charge", json={"amount": 5_000})
    order = priced(user_id, 2_000)
    db = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    holder = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    balance = "SELECT balance FROM balances WHERE user_id = $1"
    try:
        async with (
            running_server(create_app(impatient)),
            topic_reader(impatient.topic(topics.DEAD_LETTER)) as dead_letters,
        ):
            await publish(impatient.topic(topics.COUPON_EVENTS), order)
            await eventually(lambda: _equals(db.fetchval(balance, user_id), 3_000))
            async with holder.transaction():
                await holder.execute(f"{balance} FOR UPDATE", user_id)
                await publish(
                    impatient.topic(topics.ORDER_EVENTS),
                    OrderFailed(
                        order_id=order.order_id, user_id=user_id, reason=FailureReason.TIMEOUT
                    ),
                )
                await asyncio.sleep(3)  # ten statement timeouts
                assert await db.fetchval(balance, user_id) == 3_000
            await eventually(lambda: _equals(db.fetchval(balance, user_id), 5_000))
            parked = await dead_letters.getmany(timeout_ms=500)
        refunds = await db.fetchval(
            "SELECT count(*) FROM ledger WHERE order_id = $1 AND type = 'REFUND'", order.order_id
        )
    finally:
        await holder.close()
        await db.close()
    assert not any(parked.values())
    assert refunds == 1


async def _equals(value: Awaitable[object], expected: object) -> bool:
    return await value == expected

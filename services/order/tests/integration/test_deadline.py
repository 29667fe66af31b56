"""Every order ends: the deadline sweeper fails what got no answer in time."""

import asyncio
import time
import uuid
from datetime import datetime, tzinfo
from functools import partial
from typing import TYPE_CHECKING, Any

import pytest

from order.config import Settings
from order.service.deadlines import expire_overdue
from shopkit.database.engine import create_engine, session_factory
from shopkit.database.uow import UnitOfWork
from shopkit.testing import eventually

if TYPE_CHECKING:
    from ..conftest import ApiOnly, Saga


async def test_an_order_without_answers_fails_with_timeout_and_wakes_its_waiting_request(
    saga: "Saga", api_only: "ApiOnly", user_id: int
) -> None:
    # placed through an API process configured with a 1 s saga deadline; the deadline is
    # stored on the order, so the sweeper of the other (worker) process enforces it
    async with api_only(saga_timeout_s=1.0) as client:
        r = await client.post(
            "/orders",
            json={"user_id": user_id, "items": [{"product_id": 4, "quantity": 2}]},
            headers={"Prefer": "wait=25"},
        )
    assert r.status_code == 201
    order = r.json()
    assert order["status"] == "FAILED"
    assert order["failure_reason"] == "TIMEOUT"
    failed = await saga.published(order["order_id"], "OrderFailed")
    assert failed["reason"] == "TIMEOUT"
    assert failed["user_id"] == user_id

    # the point service may still pay after the deadline: it refunds on OrderFailed, and
    # the order stays FAILED
    late = await saga.send(
        saga.reserved(order, {4: 1_000}), saga.priced(order, 2_000), saga.paid(order, 2_000)
    )
    await saga.processed(*late)
    assert await saga.order(order["order_id"]) == order
    assert [t for t, _ in await saga.outbox(order["order_id"])] == [
        "OrderCreated",
        "OrderFailed",
    ]
    metrics = (await saga.client.get("/metrics")).text
    assert 'saga_orders_total{reason="TIMEOUT",status="FAILED"}' in metrics


async def test_an_order_half_way_through_the_saga_times_out_with_what_it_had_learned(
    saga: "Saga", api_only: "ApiOnly", user_id: int
) -> None:
    async with api_only(saga_timeout_s=1.0) as client:
        order = (
            await client.post(
                "/orders",
                json={"user_id": user_id, "items": [{"product_id": 8, "quantity": 1}]},
            )
        ).json()
    await saga.send(saga.reserved(order, {8: 300}))

    async def timed_out() -> dict[str, Any] | None:
        current = await saga.order(order["order_id"])
        return current if current["status"] == "FAILED" else None

    final = await eventually(timed_out)
    assert final["failure_reason"] == "TIMEOUT"
    assert final["lines"][0]["unit_price"] in (None, 300)  # the reservation may come too late


async def test_sweepers_racing_on_the_same_orders_fail_each_exactly_once(
    saga: "Saga", api_only: "ApiOnly", settings: Settings, user_id: int
) -> None:
    async with api_only(saga_timeout_s=0.5) as client:
        placed = [
            (
                await client.post(
                    "/orders",
                    json={"user_id": user_id, "items": [{"product_id": i, "quantity": 1}]},
                )
            ).json()
            for i in range(1, 31)
        ]
    await asyncio.sleep(0.5)  # every deadline has passed: the sweepers below all find work
    engine = create_engine(settings)
    sessions = session_factory(engine)
    try:
        # four more sweepers with small batches, racing the service's own
        async def sweep() -> None:
            while await expire_overdue(partial(UnitOfWork, sessions, "order"), limit=3):
                pass

        async def all_failed() -> bool:
            orders = (await saga.client.get(f"/users/{user_id}/orders")).json()["items"]
            return all(o["status"] == "FAILED" for o in orders)

        await asyncio.gather(*(sweep() for _ in range(4)))
        await eventually(all_failed)
    finally:
        await engine.dispose()
    for order in placed:
        events = [t for t, _ in await saga.outbox(order["order_id"])]
        assert events == ["OrderCreated", "OrderFailed"]
        assert (await saga.order(order["order_id"]))["failure_reason"] == "TIMEOUT"


async def test_the_deadline_is_set_on_the_database_clock_for_both_placing_paths(
    api_only: "ApiOnly", db: Any, user_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """API and worker machines may disagree about the time; the database is the one clock: it
    sets the deadline (now() + the saga timeout) and the sweeper compares with it. Here the API
    process's clock is an hour late."""

    class LateClock(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> "LateClock":
            return cls.fromtimestamp(time.time() - 3600, tz)

    monkeypatch.setattr("order.service.ordering.datetime", LateClock)
    body = {"user_id": user_id, "items": [{"product_id": 4, "quantity": 1}]}
    async with api_only(saga_timeout_s=90.0) as client:
        before = await db.fetchval("SELECT clock_timestamp()")
        plain = (await client.post("/orders", json=body)).json()
        keyed = (
            await client.post("/orders", json=body, headers={"Idempotency-Key": f"k-{user_id}"})
        ).json()
        after = await db.fetchval("SELECT clock_timestamp()")
    for order in (plain, keyed):
        deadline = await db.fetchval(
            "SELECT deadline_at - interval '90 seconds' FROM orders WHERE order_id = $1",
            uuid.UUID(order["order_id"]),
        )
        assert before <= deadline <= after, (before, deadline, after)

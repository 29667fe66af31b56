"""`Prefer: wait` across processes: the request waits in one API process, the saga step that
ends the order runs in another, and PostgreSQL NOTIFY carries the news."""

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import asyncpg

from order.adapters.completions import OrderCompletions
from order.config import Settings
from shopkit.database.listen import PgListener
from shopkit.testing import eventually

if TYPE_CHECKING:
    from ..conftest import ApiOnly, Saga


async def test_a_request_waiting_on_one_instance_is_woken_by_the_consumer_of_another(
    saga: "Saga", api_only: "ApiOnly", user_id: int
) -> None:
    # instance A serves the request and runs no consumer; instance B (the session's service)
    # handles the events: only B's NOTIFY can tell A that the order ended
    async with api_only() as a:
        request = asyncio.create_task(
            a.post(
                "/orders",
                json={"user_id": user_id, "items": [{"product_id": 3, "quantity": 1}]},
                headers={"Prefer": "wait=30"},
            )
        )

        async def placed() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = (await a.get(f"/users/{user_id}/orders")).json()["items"]
            return items

        [order] = await eventually(placed)
        assert not request.done()
        await saga.send(
            saga.reserved(order, {3: 400}), saga.priced(order, 400), saga.paid(order, 400)
        )
        # well before its 30 s wait would run out
        r = await asyncio.wait_for(request, timeout=20)
    assert r.status_code == 201
    assert r.json()["order_id"] == order["order_id"]
    assert r.json()["status"] == "PAID"


async def _listener_pids(db: asyncpg.Connection, name: str) -> list[int]:
    rows = await db.fetch("SELECT pid FROM pg_stat_activity WHERE application_name = $1", name)
    return [r["pid"] for r in rows]


async def test_the_listener_reconnects_when_its_connection_dies_and_wakes_every_waiter(
    settings: Settings, db: asyncpg.Connection
) -> None:
    name = f"order-test-{uuid.uuid4().hex[:8]}"
    listener = PgListener(settings.database_url, application_name=name, ssl="disable")
    completions = OrderCompletions()
    completions.listen_on(listener)
    stop = asyncio.Event()
    running = asyncio.create_task(listener.run(stop))
    try:
        [first_pid] = await eventually(lambda: _listener_pids(db, name))
        with completions.watch(uuid.uuid4()) as woken:
            await db.execute("SELECT pg_terminate_backend($1)", first_pid)
            # a notification may have been missed while it was down: waiters must read again
            await asyncio.wait_for(woken, timeout=20)

        async def replaced() -> list[int]:
            return [pid for pid in await _listener_pids(db, name) if pid != first_pid]

        assert len(await eventually(replaced)) == 1
        assert listener.connected

        order_id = uuid.uuid4()
        with completions.watch(order_id) as woken:
            await db.execute("SELECT pg_notify('order_done', $1)", str(order_id))
            await asyncio.wait_for(woken, timeout=20)
    finally:
        stop.set()
        await running
    assert not listener.connected

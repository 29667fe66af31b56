"""The process's LISTEN connection against real PostgreSQL: it reconnects when its connection
dies, tells every subscriber to look again (notifications were lost meanwhile), and delivers
notifications of the channels subscribed to."""

import asyncio
import uuid

import asyncpg

from shopkit.database.listen import PgListener, asyncpg_dsn
from shopkit.testing import asyncpg_dsn as plain_dsn
from shopkit.testing import eventually


async def _pids(db: asyncpg.Connection, name: str) -> list[int]:
    rows = await db.fetch("SELECT pid FROM pg_stat_activity WHERE application_name = $1", name)
    return [r["pid"] for r in rows]


async def test_the_listener_reconnects_and_tells_subscribers_to_look_again(
    database_url: str,
) -> None:
    name = f"kit-listen-{uuid.uuid4().hex[:8]}"
    listener = PgListener(database_url, application_name=name, ssl="disable")
    payloads: list[str] = []
    connects = 0

    def connected() -> None:
        nonlocal connects
        connects += 1

    listener.subscribe("kit_test", payloads.append, on_connect=connected)
    stop = asyncio.Event()
    running = asyncio.create_task(listener.run(stop))
    db = await asyncpg.connect(plain_dsn(database_url))
    try:
        [first_pid] = await eventually(lambda: _pids(db, name))
        await eventually(lambda: asyncio.sleep(0, connects == 1))  # subscribed, then told
        await db.execute("SELECT pg_terminate_backend($1)", first_pid)

        async def replaced() -> list[int]:
            return [pid for pid in await _pids(db, name) if pid != first_pid]

        assert len(await eventually(replaced, timeout_s=20)) == 1
        await eventually(lambda: asyncio.sleep(0, connects == 2))
        assert listener.connected

        await db.execute("SELECT pg_notify('kit_test', 'hello')")
        await db.execute("SELECT pg_notify('another_channel', 'not for us')")
        await eventually(lambda: asyncio.sleep(0, payloads == ["hello"]))
    finally:
        stop.set()
        await running
        await db.close()
    assert not listener.connected


async def test_a_process_without_subscriptions_holds_no_connection() -> None:
    listener = PgListener("postgresql+asyncpg://nobody@127.0.0.1:1/none", application_name="x")
    stop = asyncio.Event()
    running = asyncio.create_task(listener.run(stop))
    await asyncio.sleep(0.2)
    assert not running.done()  # waits for stop; never tried to connect
    await listener.check_ready()
    stop.set()
    await running


def test_the_listener_connects_with_a_plain_libpq_dsn() -> None:
    assert (
        asyncpg_dsn("postgresql+asyncpg://shop:s%40cret@db:5432/shop_order")
        == "postgresql://shop:s%40cret@db:5432/shop_order"
    )

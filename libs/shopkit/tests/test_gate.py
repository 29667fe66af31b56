"""The gate in front of the pool (shopkit.database.gate): a permit given back goes to the longest
waiter, never to a newcomer that asks before the woken waiter has run (SQLAlchemy's own asyncio
queue lets the newcomer take it, which starved some requests for seconds under saturation); a
waiter that times out or is cancelled leaves the line; the time-out is sqlalchemy's TimeoutError
(answered 503). And a pool behind the gate serves its waiters in arrival order."""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shopkit.database.engine import Prepared, create_engine
from shopkit.database.gate import FairGate, gate_of
from shopkit.ops.faults import is_transient
from shopkit.settings import ServiceSettings
from shopkit.testing import eventually


async def test_a_permit_given_back_goes_to_the_longest_waiter() -> None:
    gate = FairGate(1, timeout_s=5)
    await gate.acquire()
    waiter = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)  # in line for the only permit
    assert gate.waiting == 1
    gate.release()  # given back...
    newcomer = asyncio.create_task(gate.acquire())  # ...and asked for at once by a newcomer
    await waiter  # the waiter has it
    await asyncio.sleep(0)
    assert not newcomer.done()  # the newcomer waits its turn
    gate.release()
    await newcomer


async def test_a_waiter_that_times_out_leaves_the_line_with_sqlalchemys_timeout() -> None:
    gate = FairGate(1, timeout_s=0.05)
    await gate.acquire()
    with pytest.raises(PoolTimeout) as timed_out:
        await gate.acquire()
    assert is_transient(timed_out.value)  # retried by workers, 503 for HTTP
    assert gate.waiting == 0
    gate.release()  # nobody waits any more: it stays for the next one
    await asyncio.wait_for(gate.acquire(), timeout=1)


async def test_a_cancelled_waiter_leaves_the_line_and_a_permit_handed_to_it_is_passed_on() -> None:
    gate = FairGate(1, timeout_s=5)
    await gate.acquire()
    first = asyncio.create_task(gate.acquire())
    second = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)
    gate.release()  # handed to `first`...
    first.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, timeout=1)  # passed on, not lost
    gate.release()
    await asyncio.wait_for(gate.acquire(), timeout=1)  # and exactly one permit exists


READ = Prepared(text("SELECT CAST(:n AS bigint)"))


async def _served(engine: AsyncEngine, queued: Callable[[], Awaitable[None]]) -> list[int]:
    """The order in which three waiters and a newcomer get the only connection: the newcomer
    is the one who had it, gives it back and asks again at once (a busy worker)."""
    served: list[int] = []
    go = asyncio.Event()

    async def read(n: int) -> None:
        row = await READ.alone(engine, n=n)
        assert row is not None
        served.append(row[0])

    async def busy() -> None:
        gate = gate_of(engine)
        async with gate.held() if gate is not None else contextlib.nullcontext():
            connection = await engine.connect()
            await go.wait()
            await connection.close()
        await read(99)

    async def held() -> bool:
        return engine.sync_engine.pool.checkedout() == 1

    holder = asyncio.create_task(busy())
    await eventually(held, interval_s=0.01)
    waiters = [asyncio.create_task(read(n)) for n in range(3)]
    await queued()
    go.set()
    await asyncio.gather(holder, *waiters)
    return served


async def test_a_saturated_pool_serves_in_arrival_order(settings: ServiceSettings) -> None:
    engine = create_engine(settings.model_copy(update={"db_pool_size": 1}))
    gate = gate_of(engine)
    assert gate is not None
    assert gate.permits == 1

    async def all_waiting() -> bool:
        return gate.waiting == 3

    async def queued() -> None:
        await eventually(all_waiting, interval_s=0.01)

    try:
        assert await _served(engine, queued) == [0, 1, 2, 99]
    finally:
        await engine.dispose()


async def test_sqlalchemys_pool_lets_the_newcomer_overtake_which_is_why_the_gate_exists(
    database_url: str,
) -> None:
    engine = create_async_engine(database_url, pool_size=1, max_overflow=0)

    async def queued() -> None:
        await asyncio.sleep(0.5)  # the three are in the pool's line by then

    try:
        assert (await _served(engine, queued))[0] == 99
    finally:
        await engine.dispose()

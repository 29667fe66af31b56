"""The connection pool's queue: a returned connection goes to the longest waiter, never to a
newcomer that asks before the woken waiter has run (SQLAlchemy's own asyncio queue lets the
newcomer take it, which starved some requests for seconds under saturation)."""

import asyncio

import pytest
from sqlalchemy.util import greenlet_spawn
from sqlalchemy.util.queue import AsyncAdaptedQueue, Empty

from shopkit.database.pool import FairAsyncQueue


async def handed_over_to_the_waiter(queue: AsyncAdaptedQueue[str]) -> bool:
    waiter = asyncio.create_task(greenlet_spawn(queue.get, True, 5))
    await asyncio.sleep(0.05)  # in line for the only connection
    queue.put_nowait("connection")  # given back...
    try:
        stolen = queue.get_nowait()  # ...and asked for at once by a newcomer
    except Empty:
        stolen = None
    if stolen is not None:
        queue.put_nowait(stolen)  # let the waiter finish either way
    return stolen is None and await waiter == "connection"


async def test_a_returned_connection_goes_to_the_longest_waiter() -> None:
    assert await handed_over_to_the_waiter(FairAsyncQueue(1))


async def test_sqlalchemys_queue_lets_a_newcomer_overtake_which_is_why_ours_exists() -> None:
    assert not await handed_over_to_the_waiter(AsyncAdaptedQueue(1))


async def test_a_waiter_that_times_out_leaves_the_line() -> None:
    queue: FairAsyncQueue[str] = FairAsyncQueue(1)
    with pytest.raises(Empty):
        await greenlet_spawn(queue.get, True, 0.05)
    queue.put_nowait("connection")  # nobody waits any more: it stays for the next one
    assert queue.get_nowait() == "connection"

"""A first-come-first-served gate in front of a connection pool's checkout.

SQLAlchemy's asyncio pool hands a returned connection to whoever asks next, even while earlier
requests wait (its queue lets a newcomer take an available item before a woken waiter runs).
Under saturation that starved some requests for seconds while most took milliseconds. The gate
has as many permits as the pool has connections and is taken before a connection is asked for
and given back after it has been returned: the pool itself then never makes anyone wait, and a
returned permit goes straight to the longest waiter, so waiting is in arrival order and bounded
by the pool timeout (sqlalchemy's TimeoutError, answered 503).

The unit of work and the driver's statements alone (shopkit.database.engine.Prepared.alone), the
hot paths, take their connections through the gate; a plain session asks the pool directly.
"""

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from weakref import WeakKeyDictionary

from sqlalchemy.engine import Engine
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine


class FairGate:
    def __init__(self, permits: int, timeout_s: float) -> None:
        self.permits = permits
        self.timeout_s = timeout_s
        self._free = permits
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return sum(not w.done() for w in self._waiters)

    async def acquire(self) -> None:
        """A permit, in arrival order; sqlalchemy's TimeoutError after `timeout_s`."""
        if self._free and not self._waiters:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.timeout_s):
                await waiter
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return  # handed over as the time ran out: ours
            raise PoolTimeout(
                f"no database connection free within {self.timeout_s} s "
                f"({self.permits} in the pool, all in use)"
            ) from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed over as we were cancelled: pass it on
            raise
        finally:
            if not waiter.done():
                waiter.cancel()
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass

    def release(self) -> None:
        """Gives a permit back: to the longest waiter, never to a newcomer."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # handed over: nobody can overtake
                return
        self._free += 1

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()


_GATES: WeakKeyDictionary[Engine, FairGate] = WeakKeyDictionary()


def guard(engine: AsyncEngine, permits: int, timeout_s: float) -> None:
    """Puts a gate of `permits` in front of `engine`'s pool."""
    _GATES[engine.sync_engine] = FairGate(permits, timeout_s)


def gate_of(engine: AsyncEngine) -> FairGate | None:
    """`engine`'s gate; None for an engine made elsewhere (it asks its pool directly)."""
    return _GATES.get(engine.sync_engine)

"""A connection pool that serves waiters first come, first served.

SQLAlchemy's asyncio pool hands a returned connection to whoever asks next, even while earlier
requests wait (its queue lets a newcomer take an available item before a woken waiter runs).
Under saturation that starved some requests for seconds while most took milliseconds. Here a
returned connection goes straight to the longest waiter, so waiting is in arrival order and
bounded by the pool timeout.
"""

import asyncio
from collections import deque
from typing import Any, TypeVar

from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.util import await_only
from sqlalchemy.util.queue import AsyncAdaptedQueue, Empty, Full

_T = TypeVar("_T")


class FairAsyncQueue(AsyncAdaptedQueue[_T]):
    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        super().__init__(maxsize, use_lifo)
        self._items: deque[_T] = deque()
        self._waiters: deque[asyncio.Future[_T]] = deque()

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self._items)

    def qsize(self) -> int:
        return len(self._items)

    def put_nowait(self, item: _T) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(item)  # handed over: nobody can overtake
                return
        if self.full():
            raise Full()
        self._items.append(item)

    def put(self, item: _T, block: bool = True, timeout: float | None = None) -> None:
        self.put_nowait(item)

    def get_nowait(self) -> _T:
        if self._items:
            return self._items.popleft()
        raise Empty()

    def get(self, block: bool = True, timeout: float | None = None) -> _T:
        if self._items or not block:
            return self.get_nowait()
        waiter: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return await_only(self._wait(waiter, within_s=timeout))

    async def _wait(self, waiter: asyncio.Future[_T], within_s: float | None) -> _T:
        try:
            await asyncio.wait({waiter}, timeout=within_s)
        finally:
            if not waiter.done():  # timed out or cancelled: leave the line
                waiter.cancel()
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    pass
        if waiter.cancelled():
            raise Empty()
        return waiter.result()


class FairAsyncPool(AsyncAdaptedQueuePool):
    _queue_class: Any = FairAsyncQueue

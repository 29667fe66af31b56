"""How an API process learns that an order ended, whichever process handled the last event.

An order that reaches PAID or FAILED makes PostgreSQL NOTIFY `order_done` with its id when the
transaction commits (a trigger on the orders table, migration 0003). The process's shared
listener (shopkit.database.listen.PgListener) hands each notification to `on_notify`, which wakes the
requests waiting on that order (`Prefer: wait=N`).

A waiter must `watch()` the order *before* it reads the order from the database: an order that
ends after the read is then announced to a future that already exists. Notifications sent while
the listener's connection is down are lost, so every (re)connection wakes all waiters to read
again (`wake_all`).
"""

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final
from uuid import UUID

from shopkit.database.listen import PgListener
from shopkit.ops.logging import get_logger

log = get_logger(__name__)

ORDER_DONE_CHANNEL: Final = "order_done"
"""NOTIFY channel; the payload is the id of an order that just reached PAID or FAILED."""


class OrderCompletions:
    def __init__(self) -> None:
        self._waiters: dict[UUID, set[asyncio.Future[None]]] = {}

    def listen_on(self, listener: PgListener) -> None:
        listener.subscribe(ORDER_DONE_CHANNEL, self.on_notify, on_connect=self.wake_all)

    @property
    def waiting(self) -> int:
        return sum(len(futures) for futures in self._waiters.values())

    @contextmanager
    def watch(self, order_id: UUID) -> Iterator[asyncio.Future[None]]:
        """A future resolved when `order_id` may have ended (read it again to know)."""
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(order_id, set()).add(woken)
        try:
            yield woken
        finally:
            futures = self._waiters.get(order_id)
            if futures is not None:
                futures.discard(woken)
                if not futures:
                    del self._waiters[order_id]

    def wake(self, order_id: UUID) -> None:
        for woken in self._waiters.get(order_id, ()):
            if not woken.done():
                woken.set_result(None)

    def wake_all(self) -> None:
        for order_id in list(self._waiters):
            self.wake(order_id)

    def on_notify(self, payload: str) -> None:
        try:
            order_id = UUID(payload)
        except ValueError:
            log.warning("order_done_bad_payload", payload=payload[:100])
            return
        self.wake(order_id)

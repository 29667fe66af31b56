"""How an API process learns that an order ended, whichever process handled the last event.

The saga step that makes an order terminal runs `pg_notify('order_done', order_id)` in its
transaction (OrderRepository.save). Each API process keeps ONE dedicated connection that
LISTENs on the channel and wakes the requests waiting on that order (`Prefer: wait=N`).

A waiter must `watch()` the order *before* it reads the order from the database: an order that
ends after the read is then announced to a future that already exists. Notifications sent while
the connection is down are lost, so every (re)connection wakes all waiters to read again.
"""

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

import asyncpg
from sqlalchemy.engine import make_url

from order.adapters.repository import ORDER_DONE_CHANNEL
from shopkit.logging import get_logger

log = get_logger(__name__)


def asyncpg_dsn(database_url: str) -> str:
    """The plain libpq DSN of a SQLAlchemy URL (`postgresql+asyncpg://…` → `postgresql://…`)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class OrderCompletions:
    def __init__(
        self,
        database_url: str,
        *,
        application_name: str = "order-completions",
        health_check_interval_s: float = 10.0,
        reconnect_backoff_s: float = 0.5,
    ) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._application_name = application_name
        self._health_check_interval_s = health_check_interval_s
        self._reconnect_backoff_s = reconnect_backoff_s
        self._waiters: dict[UUID, set[asyncio.Future[None]]] = {}
        self._connected = False
        self._backoff = reconnect_backoff_s

    @property
    def connected(self) -> bool:
        return self._connected

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

    def _on_notification(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            order_id = UUID(payload)
        except ValueError:
            log.warning("order_done_bad_payload", payload=payload[:100])
            return
        self.wake(order_id)

    async def check_ready(self) -> None:
        if not self._connected:
            raise RuntimeError("the order_done listener is not connected")

    async def run(self, stop: asyncio.Event) -> None:
        """Listen until `stop`; reconnect (with backoff) whenever the connection is lost."""
        self._backoff = self._reconnect_backoff_s
        while not stop.is_set():
            try:
                await self._listen(stop)
            except Exception as exc:
                log.warning("order_done_listener_down", error=repr(exc), retry_in_s=self._backoff)
                await _first_of(stop, within_s=self._backoff)
                self._backoff = min(self._backoff * 2, 10.0)
        log.info("order_done_listener_stopped")

    async def _listen(self, stop: asyncio.Event) -> None:
        """One connection's life: returns on stop, raises when the connection fails."""
        lost = asyncio.Event()
        conn = await asyncpg.connect(
            self._dsn, timeout=10, server_settings={"application_name": self._application_name}
        )
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(ORDER_DONE_CHANNEL, self._on_notification)
            self._connected = True
            self._backoff = self._reconnect_backoff_s
            log.info("order_done_listener_connected")
            self.wake_all()  # whatever ended while nobody listened is read again
            while not stop.is_set():
                await _first_of(stop, lost, within_s=self._health_check_interval_s)
                if lost.is_set() or conn.is_closed():
                    raise ConnectionError("the listener's connection was closed")
                if not stop.is_set():
                    # a half-open TCP connection never reports itself closed: ask the server
                    await conn.fetchval("SELECT 1", timeout=5)
        finally:
            self._connected = False
            await _close_quietly(conn)


async def _first_of(*events: asyncio.Event, within_s: float) -> None:
    """Returns when one of `events` is set, or after `within_s` seconds."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=within_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def _close_quietly(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), timeout=5)
    except Exception:
        conn.terminate()

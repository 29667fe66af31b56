"""PostgreSQL LISTEN/NOTIFY for a whole process: ONE dedicated connection listens on every
channel the process subscribed to and calls the subscribers back, so work is started by a
commit instead of by polling.

Notifications sent while the connection is down are lost, so every (re)connection calls each
subscriber's `on_connect` too: it must then look again for whatever it may have missed. A
half-open TCP connection never reports itself closed, so the listener asks the server now and
then (once per `health_check_interval_s`, the only traffic while idle).
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
from sqlalchemy.engine import make_url

from shopkit.ops.logging import get_logger

log = get_logger(__name__)


def asyncpg_dsn(database_url: str) -> str:
    """The plain libpq DSN of a SQLAlchemy URL (`postgresql+asyncpg://…` → `postgresql://…`)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass(frozen=True)
class Subscription:
    channel: str
    on_notify: Callable[[str], None]
    """Called with the payload of each notification on the channel."""
    on_connect: Callable[[], None]
    """Called after each (re)connection: notifications may have been missed meanwhile."""


class PgListener:
    def __init__(
        self,
        database_url: str,
        *,
        application_name: str,
        ssl: str = "prefer",
        health_check_interval_s: float = 10.0,
        reconnect_backoff_s: float = 0.5,
    ) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._application_name = application_name
        self._ssl = ssl
        self._health_check_interval_s = health_check_interval_s
        self._reconnect_backoff_s = reconnect_backoff_s
        self._backoff = reconnect_backoff_s
        self._subscriptions: list[Subscription] = []
        self._connected = False

    @property
    def connected(self) -> bool:
        return self._connected

    def subscribe(
        self,
        channel: str,
        on_notify: Callable[[str], None],
        on_connect: Callable[[], None] | None = None,
    ) -> None:
        """Before `run()`: the subscriptions are set up on each connection."""
        self._subscriptions.append(
            Subscription(channel, on_notify, on_connect or (lambda: on_notify("")))
        )

    async def check_ready(self) -> None:
        if self._subscriptions and not self._connected:
            raise RuntimeError("the LISTEN connection to PostgreSQL is down")

    async def run(self, stop: asyncio.Event) -> None:
        """Listen until `stop`; reconnect (with backoff) whenever the connection is lost."""
        if not self._subscriptions:
            await stop.wait()  # nothing to listen to: no connection at all
            return
        self._backoff = self._reconnect_backoff_s
        while not stop.is_set():
            try:
                await self._listen(stop)
            except Exception as exc:
                log.warning("listener_down", error=repr(exc), retry_in_s=self._backoff)
                await first_of(stop, within_s=self._backoff)
                self._backoff = min(self._backoff * 2, 10.0)
        log.info("listener_stopped")

    async def _listen(self, stop: asyncio.Event) -> None:
        """One connection's life: returns on stop, raises when the connection fails."""
        lost = asyncio.Event()
        conn = await asyncpg.connect(
            self._dsn,
            timeout=10,
            ssl=self._ssl,
            server_settings={"application_name": self._application_name},
        )
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            for subscription in self._subscriptions:
                await conn.add_listener(subscription.channel, _callback(subscription))
            self._connected = True
            self._backoff = self._reconnect_backoff_s
            log.info("listener_connected", channels=[s.channel for s in self._subscriptions])
            for subscription in self._subscriptions:
                subscription.on_connect()
            while not stop.is_set():
                await first_of(stop, lost, within_s=self._health_check_interval_s)
                if lost.is_set() or conn.is_closed():
                    raise ConnectionError("the listener's connection was closed")
                if not stop.is_set():
                    await conn.fetchval("SELECT 1", timeout=5)
        finally:
            self._connected = False
            await _close_quietly(conn)


def _callback(subscription: Subscription) -> Callable[[object, int, str, str], None]:
    def notified(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        subscription.on_notify(payload)

    return notified


async def first_of(*events: asyncio.Event, within_s: float) -> None:
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

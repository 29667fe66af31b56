"""The coupon service under the shared fixtures of shopkit.testing.plugin, and its own: the
Redis gate, its runtime's sessions, new coupons, what issuing left behind, and a rush of issue
requests."""

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import orjson
import pytest

from coupon.adapters.gate import IssuanceGate
from coupon.config import Settings
from coupon.main import MIGRATIONS, build_runtime, create_app
from shopkit.http.auth import mint
from shopkit.ops.runtime import Runtime
from shopkit.testing import unique
from shopkit.testing.plugin import service_fixtures
from shopkit.testing.service import ServiceUnderTest

CouponFactory = Callable[..., Awaitable[dict[str, Any]]]


async def _forget_gates(settings: Settings) -> None:
    """Drops this run's keys from the shared Redis (only ours: never a FLUSHDB)."""
    gate = IssuanceGate.connect(settings)
    try:
        keys = [k async for k in gate.redis.scan_iter(match=f"{settings.redis_key_prefix}:*")]
        for start in range(0, len(keys), 1_000):
            await gate.redis.delete(*keys[start : start + 1_000])
    finally:
        await gate.close()


globals().update(
    service_fixtures(
        ServiceUnderTest(
            "coupon",
            Settings,
            create_app,
            MIGRATIONS,
            overrides={"redis_key_prefix": unique("t-coupon-")},
            cleanup=_forget_gates,
        )
    )
)


@pytest.fixture
async def gate(settings: Settings) -> AsyncIterator[IssuanceGate]:
    """The test's own view of the service's Redis gate (the same keys), patient enough to be
    used in the middle of a rush that keeps this process's event loop busy."""
    gate = IssuanceGate.connect(settings.model_copy(update={"redis_timeout_s": 10.0}))
    await gate.warm_up(4)
    try:
        yield gate
    finally:
        await gate.close()


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """The service's database sessions, without its HTTP shell or workers."""
    runtime = build_runtime(settings.model_copy(update={"run_workers": False}))
    try:
        yield runtime
    finally:
        await runtime.engine.dispose()


@pytest.fixture
def new_coupon(client: httpx.AsyncClient, admin: dict[str, str]) -> CouponFactory:
    async def make(**overrides: Any) -> dict[str, Any]:
        body = {
            "name": "10% off",
            "discount_type": "PERCENT",
            "discount_value": 10,
            "total_quantity": 100,
            "valid_days": 7,
            "min_order_amount": 0,
        } | overrides
        r = await client.post("/coupons", json=body, headers=admin)
        assert r.status_code == 201, r.text
        coupon: dict[str, Any] = r.json()
        return coupon

    return make


@dataclass(frozen=True)
class Copies:
    """What issuing left behind for a coupon: who holds a copy in PostgreSQL, the coupon's
    issued quantity there (None: no such coupon), and the Redis gate's (meta, admitted users)."""

    holders: set[int]
    issued_quantity: int | None
    gate: tuple[dict[str, Any], set[int]]


CopiesOf = Callable[[int], Awaitable[Copies]]


@pytest.fixture
def copies(db: asyncpg.Connection, gate: IssuanceGate) -> CopiesOf:
    """`await copies(coupon_id)`: what issuing left behind for that coupon, as Copies."""

    async def of(coupon_id: int) -> Copies:
        rows = await db.fetch("SELECT user_id FROM user_coupons WHERE coupon_id = $1", coupon_id)
        quantity = await db.fetchval("SELECT issued_quantity FROM coupons WHERE id = $1", coupon_id)
        return Copies({r["user_id"] for r in rows}, quantity, await gate.state(coupon_id))

    return of


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]

    @property
    def code(self) -> str | None:
        return self.body.get("code") if self.status >= 400 else None


class Rush:
    """Many POSTs at once over real HTTP/1.1 keep-alive connections to one or more servers.

    A deliberately small client: httpx spends about four times the service's own time on each
    request (and its pool scans every queued request on each change), which would turn a
    10,000-request rush into minutes of measuring the client. `answered` counts the replies so
    far, for tests that act in the middle of a rush."""

    def __init__(self, base_urls: Sequence[str], secret: str, connections: int = 256) -> None:
        self.targets = [urlsplit(u) for u in base_urls]
        self.secret = secret
        self.connections = connections
        self.answered = 0
        self._milestones: list[tuple[int, asyncio.Event]] = []

    def milestone(self, answered: int) -> asyncio.Event:
        """An event set once `answered` replies have come in."""
        event = asyncio.Event()
        self._milestones.append((answered, event))
        return event

    async def post_all(self, calls: Sequence[tuple[str, dict[str, Any]]]) -> list[Answer]:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(len(calls)):
            queue.put_nowait(i)
        answers: list[Answer | None] = [None] * len(calls)

        async def worker(n: int) -> None:
            target = self.targets[n % len(self.targets)]
            reader, writer = await asyncio.open_connection(target.hostname, target.port)
            try:
                while not queue.empty():
                    i = queue.get_nowait()
                    path, body = calls[i]
                    token = mint(self.secret, str(body["user_id"]), "user")
                    answers[i] = await self._post(reader, writer, target.netloc, path, body, token)
                    self.answered += 1
                    for answered, event in self._milestones:
                        if self.answered >= answered:
                            event.set()
            finally:
                writer.close()

        await asyncio.gather(*(worker(n) for n in range(self.connections)))
        return [a for a in answers if a is not None]

    @staticmethod
    async def _post(
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        host: str,
        path: str,
        body: dict[str, Any],
        token: str,
    ) -> Answer:
        payload = orjson.dumps(body)
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {token}\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *headers = head.decode().split("\r\n")
        length = 0
        for header in headers:
            name, _, value = header.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        content = await reader.readexactly(length)
        return Answer(int(status_line.split()[1]), orjson.loads(content) if content else {})


@pytest.fixture
def rush(settings: Settings) -> Callable[..., Rush]:
    """Rush(base_urls, connections=…): each request with a token of the user in its body."""
    return functools.partial(Rush, secret=settings.jwt_secret)

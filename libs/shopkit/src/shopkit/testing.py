"""Helpers for tests against the real stack (PostgreSQL, Kafka, Redis started by
`deploy/local/stack.sh up` or pointed at by the usual environment variables).

Isolation without Docker: every test session gets throwaway databases and a unique Kafka topic
prefix, so test runs (and parallel runs) never see each other's rows or events.
"""

import asyncio
import os
import re
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shop_contracts import Envelope, Event
from shop_contracts import topics as all_topics
from shopkit.http.auth import mint
from shopkit.messaging.consumer import EventConsumer, Handler
from shopkit.messaging.kafka import Producer, ensure_topics, make_producer
from shopkit.settings import ServiceSettings

ADMIN_DSN = os.environ.get("TEST_ADMIN_DSN", "postgresql://shop:shop@localhost:5432/postgres")
KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")


TOPIC_PREFIXES: set[str] = set()
"""The topic prefixes this test session made (`unique("t.…")`), for `delete_topics`."""


def unique(prefix: str) -> str:
    made = f"{prefix}{uuid.uuid4().hex[:10]}"
    if prefix.startswith("t."):
        TOPIC_PREFIXES.add(made)
    return made


async def delete_topics(prefixes: set[str]) -> int:
    """Deletes the topics whose names start with one of `prefixes` (a session's own, so a run
    does not leave thousands of partitions to the broker); how many."""
    from aiokafka.admin import AIOKafkaAdminClient

    if not prefixes:
        return 0
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if t.startswith(tuple(prefixes))]
        for start in range(0, len(doomed), 100):
            await admin.delete_topics(doomed[start : start + 100])
        return len(doomed)
    finally:
        await admin.close()


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://")


@asynccontextmanager
async def temp_database(name_prefix: str) -> AsyncIterator[str]:
    """A fresh empty database; yields its SQLAlchemy URL and drops it afterwards."""
    name = unique(f"t_{name_prefix}_")
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(ADMIN_DSN)
        try:
            for attempt in range(20):
                try:
                    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    break
                except asyncpg.InsufficientPrivilegeError:
                    # an autovacuum worker (which only a superuser may end) is in the new
                    # database for a moment
                    if attempt == 19:
                        raise
                    await asyncio.sleep(0.25)
        finally:
            await admin.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def publish(topic: str, event: Event, *, producer_name: str = "test") -> Envelope:
    """Publish one event as a service would (envelope JSON, key = order id)."""
    envelope = Envelope.wrap(event, producer=producer_name)
    await publish_envelope(topic, envelope)
    return envelope


async def publish_envelope(topic: str, *envelopes: Envelope) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, enable_idempotence=True)
    await producer.start()
    try:
        for envelope in envelopes:
            await producer.send(
                topic, value=orjson.dumps(envelope.model_dump(mode="json")), key=envelope.key
            )
        await producer.flush()
    finally:
        await producer.stop()


@asynccontextmanager
async def topic_reader(*topics: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer without group reading the topics from the beginning."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=KAFKA,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def collect(
    consumer: AIOKafkaConsumer,
    until: Callable[[list[Any]], bool],
    *,
    timeout_s: float = 30.0,
) -> list[Any]:
    """Read records until `until(records)` holds; raises TimeoutError with what was seen."""
    seen: list[Any] = []

    async def loop() -> None:
        while not until(seen):
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                seen.extend(records)

    try:
        await asyncio.wait_for(loop(), timeout_s)
    except TimeoutError as exc:
        raise TimeoutError(f"only {len(seen)} records before the deadline") from exc
    return seen


async def eventually(
    probe: Callable[[], Any], *, timeout_s: float = 30.0, interval_s: float = 0.1
) -> Any:
    """Await `probe()` until it returns a truthy value (the value is returned)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    last: Any = None
    while True:
        last = await probe()
        if last:
            return last
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met in {timeout_s}s (last: {last!r})")
        await asyncio.sleep(interval_s)


@asynccontextmanager
async def running_server(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app over real HTTP on a free loopback port (lifespan included)."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_keep_alive=30,
        backlog=4096,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server exited during start-up")
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def bearer(
    secret: str, sub: int | str, role: Literal["user", "admin"] = "user", ttl_s: int = 3600
) -> dict[str, str]:
    """The Authorization header of a token for `sub`."""
    return {"Authorization": f"Bearer {mint(secret, str(sub), role, ttl_s)}"}


_USER_IN_PATH = re.compile(r"^/(?:points|users)/([^/]+)")
_ORDER_BY_ID = re.compile(r"^/orders/[^/]+/?$")


class ActAsUser(httpx.Auth):
    """A test client that acts as the user each request is about, as that user's own app would:
    a user token for the user id in the path (`/points/{id}…`, `/users/{id}/…`) or in the JSON
    body's `user_id`. An order read by id (`GET /orders/{id}`) goes as an admin (the owner is not
    in the request). A request with its own Authorization header, or about no user, is sent as is:
    tests of confinement and of admin endpoints say which token they send."""

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if "authorization" not in request.headers:
            headers = self._for(request)
            if headers:
                request.headers.update(headers)
        yield request

    def _for(self, request: httpx.Request) -> dict[str, str] | None:
        path = request.url.path
        if found := _USER_IN_PATH.match(path):
            return bearer(self.secret, found.group(1))
        if request.method == "GET" and _ORDER_BY_ID.match(path):
            return bearer(self.secret, 0, "admin")
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                body = orjson.loads(request.content)
            except orjson.JSONDecodeError:
                return None
            if isinstance(body, dict) and "user_id" in body:
                return bearer(self.secret, str(body["user_id"]))
        return None


@asynccontextmanager
async def running_consumer(
    settings: ServiceSettings,
    sessions: async_sessionmaker[AsyncSession],
    handlers: Mapping[type[Event], Handler],
    *,
    group_id: str,
    topics: Sequence[str],
) -> AsyncIterator[Producer]:
    """An EventConsumer of `handlers` running (topics created) until the block ends; yields its
    producer, for the test to publish with."""
    await ensure_topics(settings, list(all_topics.ALL_TOPICS))
    producer = make_producer(settings)
    await producer.start()
    stop = asyncio.Event()
    consumer = EventConsumer(
        settings, sessions, producer, group_id=group_id, topics=list(topics), handlers=handlers
    )
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield producer
    finally:
        stop.set()
        await task
        await producer.stop()


@dataclass(frozen=True)
class PeerRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Answer = Callable[[PeerRequest], Awaitable[tuple[int, bytes]]]


@dataclass
class HttpPeer:
    """An HTTP peer of the test's own making (e.g. an external platform that hangs on one
    request), served over real HTTP by `running_server`: `answer` gets each request and says
    what to answer; `requests` keeps them."""

    answer: Answer
    requests: list[PeerRequest] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        request = PeerRequest(
            method=scope["method"],
            path=scope["path"],
            headers={k.decode().lower(): v.decode() for k, v in scope["headers"]},
            body=b"".join(chunks),
        )
        self.requests.append(request)
        status, body = await self.answer(request)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

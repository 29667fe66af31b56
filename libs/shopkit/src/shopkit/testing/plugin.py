"""The fixtures every service's tests share, as one pytest plugin (registered once, by the
`pytest11` entry point of shopkit): a service's conftest.py only says which service it tests, in
a session-scoped `service` fixture returning a `ServiceUnderTest`, and keeps what is its own.

A conftest may override any of these by name, and may build on the shared one by asking for
it under the same name (e.g. coupon's `settings` also clears its Redis keys at the end).
"""

import asyncio
import functools
import random
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shopkit.database.engine import create_engine, session_factory
from shopkit.database.migrations import upgrade
from shopkit.messaging.kafka import Producer
from shopkit.settings import ServiceSettings
from shopkit.testing.consumers import running_consumer
from shopkit.testing.peers import Answer, HttpPeer, served_peer
from shopkit.testing.servers import running_server
from shopkit.testing.service import ServiceUnderTest
from shopkit.testing.throwaway import (
    TOPIC_PREFIXES,
    asyncpg_dsn,
    delete_topics,
    temp_database,
    unique,
)
from shopkit.testing.tokens import bearer

Token = Callable[..., dict[str, str]]
StartConsumer = Callable[..., AbstractAsyncContextManager[Producer]]
ServePeer = Callable[[Answer], AbstractAsyncContextManager[HttpPeer]]


@pytest.fixture(scope="session")
def service() -> ServiceUnderTest:
    """Defined by each service's conftest.py; this one only says so."""
    pytest.fail("this test needs a session-scoped `service` fixture in its conftest.py")


@pytest.fixture(scope="session")
async def settings(service: ServiceUnderTest) -> AsyncIterator[ServiceSettings]:
    """The service's settings on a throwaway database, migrated, and with a topic prefix of
    this session's own; the database is dropped at the end."""
    async with temp_database(service.name) as url:
        settings = service.settings(
            database_url=url,
            kafka_topic_prefix=unique(f"t.{service.name}.") + ".",
            **service.overrides,
        )
        if service.migrations is not None:
            await upgrade(service.migrations, url)
        yield settings


@pytest.fixture(scope="session")
async def base_url(service: ServiceUnderTest, settings: ServiceSettings) -> AsyncIterator[str]:
    """The service's app over real HTTP with its workers (consumers, relay, sweepers), for the
    whole session."""
    async with running_server(service.create_app(settings)) as url:
        yield url


@pytest.fixture
async def client(
    service: ServiceUnderTest, base_url: str, settings: ServiceSettings
) -> AsyncIterator[httpx.AsyncClient]:
    async with service.client(base_url, settings) as c:
        yield c


@pytest.fixture
async def db(settings: ServiceSettings) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to the service's (migrated) database, to check the truth behind
    the API."""
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def sessions(
    settings: ServiceSettings,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """SQLAlchemy sessions on the service's database, without its HTTP shell or workers."""
    engine = create_engine(settings)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def consumer(
    settings: ServiceSettings, sessions: async_sessionmaker[AsyncSession]
) -> StartConsumer:
    """`consumer({Event: handler}, group_id=…, topics=[…])`: an EventConsumer of the test's own
    handlers running on these settings and sessions until the block ends; yields its producer."""
    return functools.partial(running_consumer, settings, sessions)


@pytest.fixture
def http_peer() -> ServePeer:
    """`http_peer(answer)`: an HTTP peer of the test's making served until the block ends;
    yields the HttpPeer (its `url`, the `requests` it got)."""
    return served_peer


@pytest.fixture
def user_id() -> int:
    """A user no other test uses."""
    return random.randint(1, 2**62)


@pytest.fixture(scope="session")
def token(settings: ServiceSettings) -> Token:
    """`token(sub, role="user", ttl_s=3600)`: an Authorization header with a signed JWT."""
    return functools.partial(bearer, settings.jwt_secret)


@pytest.fixture(scope="session")
def admin(token: Token) -> dict[str, str]:
    """The Authorization header of an admin."""
    return token("1", "admin")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The session's throwaway topics go with it (a broker kept for days would otherwise carry
    every run's partitions)."""
    try:
        deleted = asyncio.run(delete_topics(TOPIC_PREFIXES))
    except Exception as exc:  # never fail a run over housekeeping
        session.config.get_terminal_writer().line(f"test topics not deleted: {exc!r}")
        return
    if deleted:
        session.config.get_terminal_writer().line(f"deleted {deleted} test topics")

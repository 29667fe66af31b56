"""The fixtures every service's tests share. The plugin (registered once, by the `pytest11`
entry point of shopkit) holds those that are the same for every service (`http_peer`,
`user_id`) and removes the session's topics at its end; `service_fixtures` makes a service's
own (settings on a throwaway database, the app over HTTP, a client, …) for its conftest.py,
which says which service it tests in a `ServiceUnderTest` and keeps only what is its own.
"""

import asyncio
import functools
import random
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

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
from shopkit.testing.postgres import PrivatePostgres
from shopkit.testing.postgres import private_postgres as _private_postgres
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


def service_fixtures(under_test: ServiceUnderTest) -> dict[str, Any]:
    """The fixtures of one service's tests, for its conftest.py to take in:

        globals().update(service_fixtures(ServiceUnderTest("point", Settings, create_app, …)))

    service, settings (a throwaway database, migrated, and a topic prefix of the session's
    own), base_url (the app over real HTTP with its workers), sessions, token and admin: the
    session-scoped ones. The per-test fixtures built on them (client, db, consumer) are the
    plugin's own.

    Made anew for each service rather than defined once in the plugin: a session-scoped fixture
    is cached by pytest for the whole session, so one `settings` shared by every service's
    tests would hand the first service's settings to all the others in one run."""

    @pytest.fixture(scope="session")
    def service() -> ServiceUnderTest:
        return under_test

    @pytest.fixture(scope="session")
    async def settings() -> AsyncIterator[ServiceSettings]:
        async with temp_database(under_test.name) as url:
            settings = under_test.settings(
                database_url=url,
                kafka_topic_prefix=unique(f"t.{under_test.name}.") + ".",
                **under_test.overrides,
            )
            if under_test.migrations is not None:
                await upgrade(under_test.migrations, url)
            try:
                yield settings
            finally:
                if under_test.cleanup is not None:
                    await under_test.cleanup(settings)

    @pytest.fixture(scope="session")
    async def base_url(settings: ServiceSettings) -> AsyncIterator[str]:
        async with running_server(under_test.create_app(settings)) as url:
            yield url

    @pytest.fixture(scope="session")
    async def sessions(
        settings: ServiceSettings,
    ) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
        engine = create_engine(settings)
        try:
            yield session_factory(engine)
        finally:
            await engine.dispose()

    @pytest.fixture(scope="session")
    def token(settings: ServiceSettings) -> Token:
        return functools.partial(bearer, settings.jwt_secret)

    @pytest.fixture(scope="session")
    def admin(token: Token) -> dict[str, str]:
        return token("1", "admin")

    return {
        "service": service,
        "settings": settings,
        "base_url": base_url,
        "sessions": sessions,
        "token": token,
        "admin": admin,
    }


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


@pytest.fixture(scope="module")
async def private_postgres() -> AsyncIterator[PrivatePostgres]:
    """A PostgreSQL server of the module's own, to restart or kill -9 (`restart`, `stop`,
    `start`, `kill`; `admin_dsn` for temp_database and start_system): the shared one serves
    every other test meanwhile. shopkit.testing.postgres."""
    async with _private_postgres() as server:
        yield server


@pytest.fixture
def user_id() -> int:
    """A user no other test uses."""
    return random.randint(1, 2**62)


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

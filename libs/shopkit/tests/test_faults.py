"""Transient or permanent, for errors a real PostgreSQL raises through SQLAlchemy and asyncpg:
the failures of the infrastructure (statement timeout, deadlock, serialization failure, lock not
available, too many connections) are transient; the failures of the work itself are not."""

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from shopkit.database.engine import create_engine
from shopkit.ops.faults import is_transient, sqlstate_of
from shopkit.settings import ServiceSettings
from shopkit.testing import ADMIN_DSN, unique


@pytest.fixture
async def engine(settings: ServiceSettings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS fault_rows (id int PRIMARY KEY)"))
        await conn.execute(text("INSERT INTO fault_rows VALUES (1), (2) ON CONFLICT DO NOTHING"))
    yield engine
    await engine.dispose()


async def _raised(engine: AsyncEngine, *statements: str) -> DBAPIError:
    try:
        async with engine.begin() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    except DBAPIError as exc:
        return exc
    raise AssertionError(f"{statements} raised nothing")


async def test_a_statement_timeout_is_transient(engine: AsyncEngine) -> None:
    error = await _raised(engine, "SET LOCAL statement_timeout = 10", "SELECT pg_sleep(1)")
    assert sqlstate_of(error) == "57014"
    assert is_transient(error)


async def test_a_lock_not_available_is_transient(engine: AsyncEngine) -> None:
    async with engine.begin() as holder:
        await holder.execute(text("SELECT * FROM fault_rows WHERE id = 1 FOR UPDATE"))
        error = await _raised(engine, "SELECT * FROM fault_rows WHERE id = 1 FOR UPDATE NOWAIT")
    assert sqlstate_of(error) == "55P03"
    assert is_transient(error)


async def test_a_deadlock_victim_is_transient(engine: AsyncEngine) -> None:
    first_locked, second_locked = asyncio.Event(), asyncio.Event()
    errors: list[BaseException] = []

    async def lock(first: int, then: int, mine: asyncio.Event, theirs: asyncio.Event) -> None:
        try:
            async with engine.begin() as conn:
                await conn.execute(text(f"UPDATE fault_rows SET id = id WHERE id = {first}"))
                mine.set()
                await theirs.wait()
                await conn.execute(text(f"UPDATE fault_rows SET id = id WHERE id = {then}"))
        except DBAPIError as exc:
            errors.append(exc)

    await asyncio.gather(
        lock(1, 2, first_locked, second_locked), lock(2, 1, second_locked, first_locked)
    )
    [victim] = errors
    assert sqlstate_of(victim) == "40P01"
    assert is_transient(victim)


async def test_a_serialization_failure_is_transient(engine: AsyncEngine) -> None:
    async with engine.connect() as a, engine.connect() as b:
        for conn in (a, b):
            await conn.execute(text("BEGIN ISOLATION LEVEL SERIALIZABLE"))
            await conn.execute(text("SELECT sum(id) FROM fault_rows"))
        await a.execute(text("INSERT INTO fault_rows VALUES (100)"))
        await b.execute(text("INSERT INTO fault_rows VALUES (101)"))
        await a.execute(text("COMMIT"))
        with pytest.raises(DBAPIError) as raised:
            await b.execute(text("COMMIT"))
        await b.rollback()
    assert sqlstate_of(raised.value) == "40001"
    assert is_transient(raised.value)
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM fault_rows WHERE id >= 100"))


async def test_too_many_connections_is_transient() -> None:
    name = unique("t_full_")
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" CONNECTION LIMIT 0')
        with pytest.raises(asyncpg.PostgresError) as raised:
            await asyncpg.connect(ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}")
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.close()
    assert sqlstate_of(raised.value) == "53300"
    assert is_transient(raised.value)


async def test_errors_of_the_work_itself_are_permanent(engine: AsyncEngine) -> None:
    duplicate = await _raised(engine, "INSERT INTO fault_rows VALUES (1)")
    assert sqlstate_of(duplicate) == "23505"
    assert not is_transient(duplicate)
    division = await _raised(engine, "SELECT 1 / 0")
    assert sqlstate_of(division) == "22012"
    assert not is_transient(division)
    missing = await _raised(engine, "SELECT * FROM no_such_table")
    assert not is_transient(missing)
    assert not is_transient(ValueError("a handler bug"))
    assert not is_transient(KeyError("order_id"))


def test_network_failures_of_kafka_redis_and_http_are_transient() -> None:
    import httpx
    import redis.exceptions
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, RecordTooLargeError

    assert is_transient(ConnectionRefusedError())
    assert is_transient(TimeoutError())
    assert is_transient(KafkaConnectionError())
    assert is_transient(KafkaTimeoutError())
    assert not is_transient(RecordTooLargeError())
    assert is_transient(redis.exceptions.ConnectionError("down"))
    assert is_transient(redis.exceptions.TimeoutError("slow"))
    assert not is_transient(redis.exceptions.ResponseError("WRONGTYPE"))
    assert is_transient(httpx.ConnectTimeout("slow"))
    assert is_transient(httpx.RemoteProtocolError("closed"))
    # raised from a transient one: still transient; merely while handling one: not
    wrapped = RuntimeError("wrapped")
    wrapped.__cause__ = ConnectionResetError()
    assert is_transient(wrapped)
    bug = ValueError("a bug in the handler")
    bug.__context__ = ConnectionResetError()
    assert not is_transient(bug)

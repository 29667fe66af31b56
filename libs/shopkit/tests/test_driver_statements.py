"""Statements the driver runs itself. Hot reads (shopkit.database.engine.Prepared.alone) run on the pool's own
connections, in autocommit, and give them back: the pool never grows, a broken connection is
dropped instead of handed out again, and what a statement writes is committed when it returns.
Prepared statements run inside the session's transaction, whatever ran before them."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import BigInteger, Column, MetaData, Table, bindparam, insert, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shopkit.database.engine import Prepared, create_engine
from shopkit.ops.faults import is_transient
from shopkit.settings import ServiceSettings
from shopkit.testing import asyncpg_dsn


async def fetch_row(engine: AsyncEngine, sql: str, **params: Any) -> asyncpg.Record | None:
    return await Prepared(text(sql)).alone(engine, **params)


async def fetch_value(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    row = await fetch_row(engine, sql, **params)
    return None if row is None else row[0]


@pytest.fixture
async def engine(settings: ServiceSettings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings.model_copy(update={"db_pool_size": 2}))
    yield engine
    await engine.dispose()


async def test_rows_values_and_no_row(engine: AsyncEngine) -> None:
    row = await fetch_row(engine, "SELECT CAST(:id AS bigint) AS id, 'x' AS name", id=7)
    assert row is not None
    assert (row["id"], row["name"]) == (7, "x")
    assert await fetch_value(engine, "SELECT 1 WHERE CAST(:n AS bigint) > 0", n=0) is None
    assert await fetch_value(engine, "SELECT CAST(:n AS bigint) * 2", n=21) == 42


async def test_many_reads_share_the_pools_connections_in_autocommit(engine: AsyncEngine) -> None:
    backends = await asyncio.gather(
        *(fetch_value(engine, "SELECT pg_backend_pid()") for _ in range(200))
    )
    assert len(set(backends)) <= 2  # the pool's two, nothing opened past them
    # Autocommit: what a statement writes is committed when it returns (no BEGIN left open),
    # as another connection, outside the pool, sees.
    written = await fetch_value(
        engine, "INSERT INTO effects (amount) VALUES (:a) RETURNING id", a=5
    )
    other = await asyncpg.connect(asyncpg_dsn(engine.url.render_as_string(hide_password=False)))
    try:
        assert await other.fetchval("SELECT amount FROM effects WHERE id = $1", written) == 5
    finally:
        await other.close()


async def test_a_broken_connection_is_dropped_not_handed_out_again(engine: AsyncEngine) -> None:
    pid = await fetch_value(engine, "SELECT pg_backend_pid()")
    with pytest.raises(Exception) as lost:  # noqa: PT011 (what it is, is checked below)
        await fetch_value(engine, "SELECT pg_terminate_backend(pg_backend_pid())")
    assert is_transient(lost.value)  # a request gets 503 and a consumer waits: not a bug of ours
    pids = {await fetch_value(engine, "SELECT pg_backend_pid()") for _ in range(10)}
    assert pids
    assert None not in pids
    survivors = await fetch_value(
        engine,
        "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(CAST(:pids AS int[]))",
        pids=list(pids | {pid}),
    )
    assert survivors == len(pids)  # every connection handed out afterwards is alive


async def test_a_pooled_connection_the_server_closed_meanwhile_fails_transiently(
    settings: ServiceSettings,
) -> None:
    """The server restarted while the connection sat in the pool: the statement alone fails as
    a lost connection (a request gets 503, not 500) and the next one gets a new connection."""
    one = create_engine(
        settings.model_copy(
            update={"db_pool_size": 1, "db_max_overflow": 0, "db_pool_pre_ping": False}
        )
    )
    try:
        pid = await fetch_value(one, "SELECT pg_backend_pid()")
        admin = await asyncpg.connect(asyncpg_dsn(settings.database_url))
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        await asyncio.sleep(0.2)  # the terminated backend's socket closes
        with pytest.raises(DBAPIError) as lost:
            await fetch_value(one, "SELECT 1")
        assert lost.value.connection_invalidated
        assert is_transient(lost.value)
        assert await fetch_value(one, "SELECT pg_backend_pid()") != pid
    finally:
        await one.dispose()


_effects = Table(
    "effects",
    MetaData(),
    Column("id", BigInteger, primary_key=True),
    Column("amount", BigInteger),
)
ADD = Prepared(insert(_effects).values(amount=bindparam("amount")).returning(_effects.c.id))
TWICE = Prepared(text("SELECT CAST(:n AS bigint) * 2 + CAST(:n AS bigint), CAST(:doc AS jsonb)"))


async def _amounts(sessions: async_sessionmaker[AsyncSession]) -> list[int]:
    async with sessions() as session:
        rows = await session.execute(text("SELECT amount FROM effects ORDER BY id"))
        return [r.amount for r in rows]


@pytest.mark.parametrize("first", ["prepared", "sqlalchemy"])
async def test_prepared_statements_share_the_sessions_transaction(
    sessions: async_sessionmaker[AsyncSession], first: str
) -> None:
    async with sessions() as session:
        async with session.begin():
            if first == "sqlalchemy":
                await session.execute(text("INSERT INTO effects (amount) VALUES (1)"))
            row = await ADD.fetchrow(session, amount=2)
            assert row is not None
            assert row["id"] > 0
            await session.execute(text("INSERT INTO effects (amount) VALUES (3)"))
            await ADD.executemany(session, [{"amount": 4}, {"amount": 5}])
            await session.rollback()
    assert await _amounts(sessions) == []  # all of it undone, the driver's statements too
    async with sessions() as session, session.begin():
        await ADD.fetch(session, amount=6)
        await session.execute(text("INSERT INTO effects (amount) VALUES (7)"))
    assert await _amounts(sessions) == [6, 7]


async def test_parameters_by_name_once_each_and_through_their_types(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        row = await TWICE.fetchrow(session, doc='{"a": [1, 2]}', n=5)
    assert row is not None
    assert row[0] == 15
    assert row[1] == {"a": [1, 2]}
    jsonb = Prepared(text("SELECT :doc").bindparams(bindparam("doc", type_=JSONB)).columns())
    async with sessions() as session, session.begin():
        row = await jsonb.fetchrow(session, doc={"b": "ü"})  # the JSONB type serializes it
    assert row is not None
    assert row[0] == {"b": "ü"}


async def test_a_connection_lost_under_a_prepared_statement_is_transient_and_dropped(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    async with sessions() as session:
        pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar()
        admin = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        with pytest.raises(DBAPIError) as lost:
            await ADD.fetch(session, amount=1)
        assert lost.value.connection_invalidated
        assert is_transient(lost.value)  # retried while it lasts, never dead-lettered
    for _ in range(20):  # every pooled connection handed out afterwards works
        async with sessions() as session, session.begin():
            await ADD.fetch(session, amount=2)
    assert await _amounts(sessions) == [2] * 20


async def test_constants_in_the_statement_keep_their_values(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    only_big = Prepared(select(_effects.c.amount).where(_effects.c.amount > 10))
    async with sessions() as session, session.begin():
        await ADD.executemany(session, [{"amount": 5}, {"amount": 50}])
        assert [row[0] for row in await only_big.fetch(session)] == [50]

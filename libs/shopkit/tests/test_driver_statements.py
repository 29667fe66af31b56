"""Statements the driver runs itself. Hot reads (shopkit.database.engine.Prepared.alone) run on the pool's own
connections, in autocommit, and give them back: the pool never grows, a broken connection is
dropped instead of handed out again, one the server closed while it sat in the pool (a restart)
is replaced before anything is sent on it, a read that loses its connection under it runs again
on another (a write does not), and what a statement writes is committed when it returns.
Prepared statements run inside the session's transaction, whatever ran before them."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import BigInteger, Column, MetaData, Table, bindparam, func, insert, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shopkit.database.engine import Prepared, create_engine
from shopkit.ops.faults import is_transient
from shopkit.settings import ServiceSettings
from shopkit.testing import asyncpg_dsn, eventually


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


async def _terminate(database_url: str, *pids: int) -> None:
    """Ends the server's side of connections, as a restart does, and waits until the client's
    side has read it (the end of the socket reaches asyncpg as the event loop runs)."""
    admin = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await admin.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid", pids)
        await eventually(lambda: _none_left(admin, pids), interval_s=0.01, timeout_s=10)
    finally:
        await admin.close()
    await asyncio.sleep(0.1)


async def _none_left(admin: asyncpg.Connection, pids: tuple[int, ...]) -> bool:
    found = await admin.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", pids
    )
    return bool(found == 0)


def _one_connection(settings: ServiceSettings, size: int = 1) -> AsyncEngine:
    return create_engine(
        settings.model_copy(
            update={"db_pool_size": size, "db_max_overflow": 0, "db_pool_pre_ping": False}
        )
    )


@pytest.mark.parametrize("kind", ["read", "write"])
async def test_a_pooled_connection_the_server_closed_is_replaced_before_the_statement(
    settings: ServiceSettings, kind: str
) -> None:
    """The server restarted while the connection sat in the pool: the pool hands out a new
    connection instead (nothing was sent on the closed one, so even a write runs, once), and
    the request never sees it."""
    one = _one_connection(settings)
    try:
        pid = await fetch_value(one, "SELECT pg_backend_pid()")
        await _terminate(settings.database_url, pid)
        if kind == "read":
            assert await fetch_value(one, "SELECT pg_backend_pid()") not in (None, pid)
        else:
            written = await fetch_value(
                one, "INSERT INTO effects (amount) VALUES (:a) RETURNING id", a=17
            )
            assert (
                await fetch_value(
                    one, "SELECT count(*) FROM effects WHERE id = :id AND amount = 17", id=written
                )
                == 1
            )
    finally:
        await one.dispose()


async def test_sessions_get_no_closed_connection_either(settings: ServiceSettings) -> None:
    """SQLAlchemy's statements and the driver's in a session, on the same pool."""
    one = _one_connection(settings)
    sessions = async_sessionmaker(one)
    try:
        pid = await fetch_value(one, "SELECT pg_backend_pid()")
        await _terminate(settings.database_url, pid)
        async with sessions() as session:
            assert (await session.execute(text("SELECT pg_backend_pid()"))).scalar() != pid
        pid = await fetch_value(one, "SELECT pg_backend_pid()")
        await _terminate(settings.database_url, pid)
        async with sessions() as session:
            row = await Prepared(text("SELECT pg_backend_pid()")).fetchrow(session)
            assert row is not None
            assert row[0] != pid
    finally:
        await one.dispose()


async def test_one_closed_connection_recycles_every_older_one_at_its_next_checkout(
    settings: ServiceSettings,
) -> None:
    """The pool is invalidated as a whole (a closed connection means the server restarted), so
    a connection opened before it, even one that looks alive, is not handed out again."""
    two = _one_connection(settings, size=2)
    try:
        async with two.connect() as held:
            alive = (await held.get_raw_connection()).driver_connection.get_server_pid()
            async with two.connect() as other:
                closed = (await other.get_raw_connection()).driver_connection.get_server_pid()
            await _terminate(settings.database_url, closed)
            async with two.connect() as replaced:
                pid = (await replaced.get_raw_connection()).driver_connection.get_server_pid()
                assert pid not in (alive, closed)
        pids = {await fetch_value(two, "SELECT pg_backend_pid()") for _ in range(4)}
        assert alive not in pids
        assert len(pids) == 2  # the pool's two, both opened after the restart was seen
    finally:
        await two.dispose()


async def _lose_the_connection_under(
    engine: AsyncEngine, statement: Prepared
) -> tuple[int, "asyncio.Task[asyncpg.Record | None]"]:
    """Runs `statement` (which sleeps) alone and ends its backend while it runs: that backend's
    pid, and the statement's task."""
    running = asyncio.create_task(statement.alone(engine))
    admin = await asyncpg.connect(asyncpg_dsn(engine.url.render_as_string(hide_password=False)))
    try:

        async def sleeping() -> int | None:
            pid: int | None = await admin.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE query LIKE '%pg_sleep(%'"
                " AND pid <> pg_backend_pid()"
            )
            return pid

        killed: int = await eventually(sleeping, interval_s=0.01, timeout_s=10)
        await admin.execute("SELECT pg_terminate_backend($1)", killed)
    finally:
        await admin.close()
    return killed, running


async def test_a_read_that_loses_its_connection_under_it_runs_again_on_another(
    engine: AsyncEngine,
) -> None:
    read = Prepared(select(func.pg_backend_pid(), func.pg_sleep(0.5).label("slept")))
    assert read.rerunnable
    killed, running = await _lose_the_connection_under(engine, read)
    row = await running
    assert row is not None
    assert row[0] != killed  # answered on a live connection


async def test_a_write_that_loses_its_connection_under_it_is_not_run_again(
    engine: AsyncEngine,
) -> None:
    """Once sent, a write may have committed: it fails as a lost connection (503), once."""
    write = Prepared(text("INSERT INTO effects (amount) SELECT 41 FROM pg_sleep(0.5) RETURNING id"))
    assert not write.rerunnable
    _, running = await _lose_the_connection_under(engine, write)
    with pytest.raises(DBAPIError) as lost:
        await running
    assert lost.value.connection_invalidated
    assert is_transient(lost.value)
    assert await fetch_value(engine, "SELECT count(*) FROM effects WHERE amount = 41") == 0


def test_only_plain_selects_are_rerunnable_unless_said() -> None:
    assert Prepared(select(_effects.c.id)).rerunnable
    assert not Prepared(insert(_effects).values(amount=bindparam("a"))).rerunnable
    assert not Prepared(text("SELECT 1")).rerunnable  # text says nothing: the caller does
    assert Prepared(text("SELECT 1"), rerunnable=True).rerunnable
    writing_cte = insert(_effects).values(amount=bindparam("a")).returning(_effects.c.id).cte("w")
    assert not Prepared(select(writing_cte.c.id)).rerunnable


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

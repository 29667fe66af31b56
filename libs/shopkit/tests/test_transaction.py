"""Transactions on the driver's connection (shopkit.database.transaction): SQLAlchemy's statements
and the driver's own share one transaction in either order, with the round trips SQLAlchemy's
adapter made (BEGIN with the first statement, COMMIT or ROLLBACK at the end, none when nothing
ran, one statement alone for the unit of work's all-in-one write); a connection asked for
autocommit gets no BEGIN and the next one from the pool is transactional again; a connection lost
under COMMIT is dropped and reads as transient (one the server closed before BEGIN is replaced
by the pool first); a COMMIT the server turns into a ROLLBACK
raises; a connection given back inside a transaction is rolled back before anyone gets it."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import BigInteger, Column, MetaData, Table, bindparam, event, insert, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shopkit.database.engine import Prepared, autocommit, create_engine, session_factory
from shopkit.database.transaction import driver_of
from shopkit.database.uow import UnitOfWork
from shopkit.ops.faults import is_transient
from shopkit.settings import ServiceSettings
from shopkit.testing import asyncpg_dsn, eventually

_effects = Table(
    "effects", MetaData(), Column("id", BigInteger, primary_key=True), Column("amount", BigInteger)
)
ADD = Prepared(insert(_effects).values(amount=bindparam("amount")).returning(_effects.c.id))
FAIL = Prepared(text("SELECT 1 / CAST(:zero AS int)"))


class Sent:
    """What went to the server, each a round trip: the driver's statements, in order (asyncpg's
    query logger, which it calls soon after each), and SQLAlchemy's, in order (its cursor
    events: the adapter runs them as prepared statements, which the logger does not see)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.driver: list[str] = []
        self.sqlalchemy: list[str] = []

        @event.listens_for(engine.sync_engine, "connect")
        def _log(dbapi_connection: Any, _: Any) -> None:
            dbapi_connection.driver_connection.add_query_logger(
                lambda q: self.driver.append(q.query.split()[0].rstrip(";").upper())
            )

        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def _sqlalchemy(*args: Any) -> None:
            self.sqlalchemy.append(args[2].split()[0].upper())

    async def take(self) -> tuple[list[str], list[str]]:
        """(the driver's, SQLAlchemy's) since the last take."""
        await asyncio.sleep(0)  # the query logger's calls
        taken = self.driver, self.sqlalchemy
        self.driver, self.sqlalchemy = [], []
        return taken


@pytest.fixture
async def engine(settings: ServiceSettings) -> AsyncIterator[AsyncEngine]:
    """One connection: what one unit of work leaves behind, the next one gets."""
    engine = create_engine(settings.model_copy(update={"db_pool_size": 1}))
    yield engine
    await engine.dispose()


@pytest.fixture
def one(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


async def _amounts(sessions: async_sessionmaker[AsyncSession]) -> list[int]:
    async with sessions() as session:
        rows = await session.execute(text("SELECT amount FROM effects ORDER BY id"))
        return [r.amount for r in rows]


async def _orm_add(session: AsyncSession, amount: int) -> None:
    await session.execute(insert(_effects).values(amount=amount))


@pytest.mark.parametrize("first", ["driver", "sqlalchemy"])
async def test_a_unit_of_work_rolls_back_both_kinds_of_statement(
    one: async_sessionmaker[AsyncSession], first: str
) -> None:
    async with UnitOfWork(one, "test") as uow:
        if first == "sqlalchemy":
            await _orm_add(uow.session, 1)
        await ADD.fetchrow(uow.session, amount=2)
        await _orm_add(uow.session, 3)
        await ADD.executemany(uow.session, [{"amount": 4}])
    assert await _amounts(one) == []  # never committed: all of it undone
    async with UnitOfWork(one, "test") as uow:
        if first == "sqlalchemy":
            await _orm_add(uow.session, 1)
        await ADD.fetchrow(uow.session, amount=2)
        await _orm_add(uow.session, 3)
        await uow.commit()
    assert await _amounts(one) == ([1, 2, 3] if first == "sqlalchemy" else [2, 3])


async def test_the_round_trips_are_those_of_sqlalchemys_adapter(
    engine: AsyncEngine, one: async_sessionmaker[AsyncSession]
) -> None:
    sent = Sent(engine)
    async with UnitOfWork(one, "test"):
        pass
    async with UnitOfWork(one, "test") as uow:
        await uow.commit()
    assert await sent.take() == ([], [])  # nothing ran: nothing sent, not even BEGIN
    async with UnitOfWork(one, "test") as uow:
        uow.insert(_effects, [{"amount": 1}])
        await uow.commit()
    assert await sent.take() == (["INSERT"], [])  # the all-in-one write: no BEGIN, no COMMIT
    async with UnitOfWork(one, "test") as uow:
        await ADD.fetchrow(uow.session, amount=2)
        await _orm_add(uow.session, 3)
        await uow.commit()
    assert await sent.take() == (["BEGIN", "INSERT", "COMMIT"], ["INSERT"])
    async with UnitOfWork(one, "test") as uow:
        await _orm_add(uow.session, 4)
        await ADD.fetchrow(uow.session, amount=5)
    assert await sent.take() == (["BEGIN", "INSERT", "ROLLBACK"], ["INSERT"])
    assert await Prepared(text("SELECT 1")).alone(engine) is not None
    assert await sent.take() == (["SELECT"], [])
    assert await _amounts(one) == [1, 2, 3]


async def test_autocommit_commits_each_statement_and_is_not_handed_on(
    engine: AsyncEngine, one: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    sent = Sent(engine)
    other = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        async with one() as session:
            await ADD.fetchrow(await autocommit(session), amount=1)
            await _orm_add(session, 2)
            # committed as each returned, as another connection sees, though never committed
            assert await other.fetchval("SELECT array_agg(amount) FROM effects") == [1, 2]
        assert await sent.take() == (["INSERT"], ["INSERT"])
        async with one() as session:  # the same pooled connection: transactional again
            await ADD.fetchrow(session, amount=3)
            assert await other.fetchval("SELECT count(*) FROM effects") == 2
        assert await sent.take() == (["BEGIN", "INSERT", "ROLLBACK"], [])
    finally:
        await other.close()
    assert await _amounts(one) == [1, 2]


async def test_a_commit_that_the_server_turns_into_a_rollback_raises(
    one: async_sessionmaker[AsyncSession],
) -> None:
    async with one() as session:
        await ADD.fetchrow(session, amount=1)
        with pytest.raises(asyncpg.DivisionByZeroError):
            await FAIL.fetchrow(session, zero=0)  # the driver's: SQLAlchemy does not know
        with pytest.raises(asyncpg.InFailedSQLTransactionError):
            await session.commit()
    assert await _amounts(one) == []


async def _terminate(database_url: str, pid: int) -> None:
    """Ends the server's side of a connection, and waits until it has gone."""
    admin = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", pid)

        async def gone() -> bool:
            found = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid
            )
            return found == 0

        await eventually(gone, interval_s=0.01)
    finally:
        await admin.close()


async def test_a_connection_lost_under_commit_is_transient_and_dropped(
    engine: AsyncEngine, one: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    pid = await Prepared(text("SELECT pg_backend_pid()")).alone(engine)
    assert pid is not None

    async def work() -> None:
        async with UnitOfWork(one, "test") as uow:
            await ADD.fetchrow(uow.session, amount=1)
            await _terminate(database_url, pid[0])
            await uow.commit()

    with pytest.raises(DBAPIError) as lost:
        await work()
    assert lost.value.connection_invalidated
    assert is_transient(lost.value)  # retried while it lasts, never dead-lettered
    async with UnitOfWork(one, "test") as uow:  # the pool's next connection works
        await ADD.fetchrow(uow.session, amount=3)
        await uow.commit()
    assert await _amounts(one) == [3]


async def test_a_connection_closed_before_begin_is_replaced_first(
    engine: AsyncEngine, one: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    """The server ended the pooled connection before the unit of work began (a restart): the
    pool replaces it when the session takes it, so its BEGIN and the rest go on a live one."""
    pid = await Prepared(text("SELECT pg_backend_pid()")).alone(engine)
    assert pid is not None
    async with UnitOfWork(one, "test") as uow:
        await _terminate(database_url, pid[0])
        await asyncio.sleep(0.1)  # the end of the socket reaches asyncpg
        await ADD.fetchrow(uow.session, amount=2)  # its BEGIN goes first
        await uow.commit()
    assert await _amounts(one) == [2]


async def test_a_connection_given_back_inside_a_transaction_is_rolled_back(
    engine: AsyncEngine, one: async_sessionmaker[AsyncSession]
) -> None:
    connection = await engine.connect()
    try:
        driver = driver_of(connection)
        await driver.execute("BEGIN")  # as a statement cancelled mid-transaction can leave it
        await driver.execute("INSERT INTO effects (amount) VALUES (1)")
    finally:
        await connection.close()
    connection = await engine.connect()  # the pool's only connection, the same one
    try:
        assert driver_of(connection) is driver
        assert not driver.is_in_transaction()
    finally:
        await connection.close()
    assert await _amounts(one) == []

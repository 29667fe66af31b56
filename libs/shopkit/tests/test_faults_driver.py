"""Permanent means permanent: a failure is classified by the driver's own error, whatever
SQLAlchemy wraps it in. Bad data (a value outside int64, a data exception or an integrity
violation: SQLSTATE classes 22 and 23) is permanent even under an InterfaceError, an
OperationalError or a lost connection; a lost connection, a serialization failure, a deadlock
and the timeouts stay transient. The driver errors are asyncpg's own classes, wrapped the way
SQLAlchemy's asyncpg dialect wraps them, and then the real thing from a real PostgreSQL."""

from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import BigInteger, bindparam, text
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine

from shopkit.database.engine import Prepared, create_engine, session_factory
from shopkit.ops.faults import is_bad_data, is_timeout, is_transient, sqlstate_of
from shopkit.settings import ServiceSettings

DBAPI = asyncpg_dialect.dialect.import_dbapi()
"""SQLAlchemy's DB-API adapter of asyncpg: the errors it raises are its own classes."""

OUT_OF_INT64 = "invalid input for query argument $1: 9223372036854775808 (value out of int64 range)"


def wrapped(driver_error: Exception, *, invalidated: bool = False) -> DBAPIError:
    """`driver_error` as SQLAlchemy hands it on: its asyncpg dialect translates it to the
    adapter's class for it (by asyncpg's class hierarchy, raised from it: the dialect's own
    code), and the engine wraps that in sqlalchemy.exc (by that class's name, raised from it)."""
    try:
        AsyncAdapt_asyncpg_connection._handle_exception_no_connection(DBAPI, driver_error)
    except DBAPI.Error as error:
        adapted = error
    wrapper = DBAPIError.instance(
        "SELECT $1", (2**63,), adapted, DBAPI.Error, connection_invalidated=invalidated
    )
    wrapper.__cause__ = adapted
    return wrapper


class InvalidQueryInput(asyncpg.exceptions.InterfaceError, ValueError):
    """As asyncpg's client-side "invalid query input" DataError is made (private to asyncpg,
    raised by versions before 0.32): an InterfaceError that is also a ValueError."""


def test_asyncpg_s_refusal_of_a_value_wrapped_as_interface_error_is_permanent() -> None:
    refused = InvalidQueryInput(OUT_OF_INT64)
    error = wrapped(refused)
    assert isinstance(error, InterfaceError)  # what made it transient before
    assert sqlstate_of(error) is None
    assert is_bad_data(error)
    assert not is_transient(error)
    assert not is_transient(wrapped(refused, invalidated=True))


def test_a_data_exception_is_permanent_whatever_it_is_wrapped_in() -> None:
    for driver_error in (
        asyncpg.exceptions.DataError(OUT_OF_INT64),  # how asyncpg 0.32 raises it, SQLSTATE 22000
        asyncpg.exceptions.NumericValueOutOfRangeError("bigint out of range"),  # 22003
        asyncpg.exceptions.InvalidTextRepresentationError("invalid input syntax"),  # 22P02
        asyncpg.exceptions.UniqueViolationError("duplicate key"),  # 23505
        asyncpg.exceptions.CheckViolationError("violates check constraint"),  # 23514
    ):
        assert not is_transient(driver_error), driver_error
        assert not is_transient(wrapped(driver_error)), driver_error
        assert not is_transient(wrapped(driver_error, invalidated=True)), driver_error
        as_outage = OperationalError("SELECT $1", (2**63,), driver_error)
        assert not is_transient(as_outage), driver_error
        as_interface = InterfaceError("SELECT $1", (2**63,), driver_error)
        assert not is_transient(as_interface), driver_error


def test_outages_and_contention_stay_transient() -> None:
    for driver_error in (
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),  # 08003
        asyncpg.exceptions.SerializationError("could not serialize access"),  # 40001
        asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),  # 40P01
        asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
        asyncpg.exceptions.LockNotAvailableError("could not obtain lock"),  # 55P03
        asyncpg.exceptions.TooManyConnectionsError("too many clients"),  # 53300
        asyncpg.exceptions.AdminShutdownError("terminating connection"),  # 57P01
    ):
        assert is_transient(driver_error), driver_error
        assert is_transient(wrapped(driver_error)), driver_error
    closed = asyncpg.exceptions.InterfaceError(
        "cannot call Connection.fetch(): connection is closed"
    )
    assert isinstance(wrapped(closed), InterfaceError)
    assert is_transient(wrapped(closed))  # no SQLSTATE, not bad data: its wrapper says lost
    assert is_transient(closed)  # unwrapped: asyncpg's own words for a lost connection
    assert is_transient(ConnectionResetError("reset by peer"))
    assert is_transient(TimeoutError())
    assert is_transient(PoolTimeout("no connection free"))


def test_asyncpg_s_other_refusals_are_not_outages() -> None:
    busy = asyncpg.exceptions.InterfaceError(
        "cannot perform operation: another operation is in progress"
    )
    assert not is_transient(busy)  # a bug of ours, however often it is retried
    misconfigured = asyncpg.exceptions.ClientConfigurationError("invalid sslmode")
    assert not is_bad_data(misconfigured)
    assert not is_transient(misconfigured)


def test_a_timeout_of_the_work_is_told_from_an_outage() -> None:
    statement = asyncpg.exceptions.QueryCanceledError(
        "canceling statement due to statement timeout"
    )
    lock = asyncpg.exceptions.LockNotAvailableError("canceling statement due to lock timeout")
    assert is_timeout(wrapped(statement))
    assert is_timeout(lock)
    assert is_timeout(TimeoutError())
    for outage in (
        wrapped(asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")),
        OperationalError("SELECT 1", {}, ConnectionRefusedError("database restarting")),
        wrapped(asyncpg.exceptions.TooManyConnectionsError("too many clients")),
        PoolTimeout("no database connection free within 10 s"),
    ):
        assert is_transient(outage), outage
        assert not is_timeout(outage), outage
    assert not is_timeout(wrapped(asyncpg.exceptions.NumericValueOutOfRangeError("out of range")))
    assert not is_timeout(ValueError("a handler bug"))


@pytest.fixture
async def engine(settings: ServiceSettings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings)
    yield engine
    await engine.dispose()


async def _raised_by_sqlalchemy(engine: AsyncEngine, statement: str, value: int) -> DBAPIError:
    with pytest.raises(DBAPIError) as raised:
        async with engine.begin() as conn:
            await conn.execute(
                text(statement).bindparams(bindparam("v", type_=BigInteger)), {"v": value}
            )
    return raised.value


async def test_a_value_outside_int64_from_a_real_database_is_permanent(engine: AsyncEngine) -> None:
    """asyncpg refuses to send it (its DataError, "value out of int64 range"), through SQLAlchemy
    and run by the driver itself (shopkit.database.engine.Prepared), and PostgreSQL refuses an
    int64 overflow (22003): each is permanent, and the same statement with a value in range is
    not failing at all."""
    through_sqlalchemy = await _raised_by_sqlalchemy(engine, "SELECT CAST(:v AS bigint)", 2**63)
    assert isinstance(through_sqlalchemy.orig.__cause__, asyncpg.exceptions.DataError)
    assert "int64" in str(through_sqlalchemy)
    assert is_bad_data(through_sqlalchemy)
    assert not is_transient(through_sqlalchemy)

    prepared = Prepared(
        text("SELECT CAST(:v AS bigint)").bindparams(bindparam("v", type_=BigInteger))
    )
    async with session_factory(engine)() as session, session.begin():
        with pytest.raises(asyncpg.exceptions.DataError) as by_driver:
            await prepared.fetch(session, v=2**63)
    assert not is_transient(by_driver.value)

    overflow = await _raised_by_sqlalchemy(engine, "SELECT CAST(:v AS bigint) + 1", 2**63 - 1)
    assert sqlstate_of(overflow) == "22003"
    assert isinstance(overflow.orig.__cause__, asyncpg.exceptions.NumericValueOutOfRangeError)
    assert not is_transient(overflow)

    async with engine.begin() as conn:
        value = await conn.scalar(
            text("SELECT CAST(:v AS bigint)").bindparams(bindparam("v", type_=BigInteger)),
            {"v": 2**63 - 1},
        )
    assert value == 2**63 - 1

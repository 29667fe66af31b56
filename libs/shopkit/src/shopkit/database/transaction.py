"""Transactions are ours, on the driver's connection: the convention of every engine made by
shopkit.database.engine.create_engine.

Some statements are run by asyncpg itself (shopkit.database.engine.Prepared: SQLAlchemy's
per-statement execution cost three times the driver's CPU on the hot paths), the others by
SQLAlchemy (models, migrations, the queries that are not hot), and both kinds must share one
transaction in whatever order they come. SQLAlchemy's asyncpg adapter keeps its transaction to
itself (it begins one lazily, before its first statement, through private state), so here the
adapter runs every connection in autocommit and never begins anything, and the transaction is
sent on the asyncpg connection by this module, driven by SQLAlchemy's public transaction events:

- when SQLAlchemy begins a transaction on a connection (a session's first statement, a Core
  connection's autobegin, `engine.begin()`), `BEGIN` is sent;
- its commit sends `COMMIT` (a COMMIT the server answers with ROLLBACK, because a statement of
  the transaction failed, raises instead of passing for a commit);
- its rollback, and a connection given back to the pool inside a transaction, send `ROLLBACK`;
- a connection asked for autocommit explicitly (execution option isolation_level="AUTOCOMMIT",
  as shopkit.database.engine.autocommit does) gets no BEGIN: each statement commits alone.

The round trips are those the adapter made: BEGIN with the first statement, COMMIT or ROLLBACK
at the end, nothing at all when nothing ran. A connection lost under BEGIN, COMMIT or ROLLBACK is
invalidated (the pool never hands it out again) and the failure is SQLAlchemy's DBAPIError with
connection_invalidated, which shopkit.ops.faults treats as transient. Only the database's default
isolation level is supported (READ COMMITTED): no service asks for another.
"""

from typing import Any, cast

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import AdaptedConnection, Connection
from sqlalchemy.exc import DBAPIError, InvalidRequestError, StatementError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import PoolResetState

ENGINE_OPTIONS: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"}
"""create_async_engine's arguments for this convention: the adapter never begins a transaction."""


def own_transactions(engine: AsyncEngine) -> None:
    """Runs `engine`'s transactions on the driver's connection (see the module); `engine` was
    created with ENGINE_OPTIONS."""
    sync = engine.sync_engine
    event.listen(sync, "begin", _begin)
    event.listen(sync, "commit", _commit)
    event.listen(sync, "rollback", _rollback)
    event.listen(sync, "reset", _reset)


def is_autocommit(connection: Connection) -> bool:
    level = connection.get_execution_options().get("isolation_level")
    if level is None:
        return False
    if level != "AUTOCOMMIT":
        raise InvalidRequestError(
            f"isolation level {level}: shopkit's transactions run at the database's default "
            "(shopkit.database.transaction)"
        )
    return True


def driver_of(connection: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under `connection`, through public attributes and without the
    greenlet hop of `get_raw_connection()` (a third of a checkout's CPU): `Connection.connection`
    does I/O only to reconnect an invalidated connection outside a transaction, and the
    connections asked here are freshly checked out or inside their session's transaction (an
    invalidated one raises there, as SQLAlchemy's own statements would)."""
    sync = connection.sync_connection
    assert sync is not None, "a started connection"
    driver: asyncpg.Connection = sync.connection.driver_connection
    return driver


async def lost(
    connection: AsyncConnection, driver: asyncpg.Connection, statement: str, error: Exception
) -> StatementError | None:
    """SQLAlchemy's lost connection when `driver` closed under `error` (the connection is
    invalidated: the pool will not hand it out again); None when it is alive."""
    if not driver.is_closed():
        return None
    await connection.invalidate(error)
    return DBAPIError.instance(statement, None, error, Exception, connection_invalidated=True)


def _begin(connection: Connection) -> None:
    if not is_autocommit(connection):
        _send(connection, "BEGIN")


def _commit(connection: Connection) -> None:
    if connection.invalidated or is_autocommit(connection):
        return  # SQLAlchemy refuses to commit the former; the latter has nothing to commit
    driver: asyncpg.Connection = connection.connection.driver_connection
    if not driver.is_closed() and not driver.is_in_transaction():
        return
    # A closed connection fails here as lost: its transaction never committed.
    if _send(connection, "COMMIT") != "COMMIT":
        raise asyncpg.InFailedSQLTransactionError(
            "COMMIT of a transaction in which a statement failed: it was rolled back"
        )


def _rollback(connection: Connection) -> None:
    if connection.closed or connection.invalidated:
        return
    driver: asyncpg.Connection = connection.connection.driver_connection
    if driver.is_closed() or not driver.is_in_transaction():
        return  # nothing to undo: the server ended it with the connection, or nothing ran
    _send(connection, "ROLLBACK")


def _send(connection: Connection, statement: str) -> str:
    """Runs `statement` on the driver from SQLAlchemy's synchronous side (AdaptedConnection's
    run_async, made for event handlers)."""
    adapted = cast(AdaptedConnection, connection.connection.dbapi_connection)
    try:
        status: str = adapted.run_async(lambda driver: driver.execute(statement))
    except Exception as exc:
        driver: asyncpg.Connection = adapted.driver_connection
        if not driver.is_closed():
            raise
        connection.invalidate(exc)
        raise DBAPIError.instance(
            statement, None, exc, Exception, connection_invalidated=True
        ) from exc
    return status


def _reset(dbapi_connection: Any, _record: Any, state: PoolResetState) -> None:
    """A connection given back inside a transaction (its rollback failed, or its work was
    cancelled under a statement) is rolled back before anyone else gets it; if that fails, the
    pool drops it."""
    adapted = cast(AdaptedConnection, dbapi_connection)
    driver: asyncpg.Connection = adapted.driver_connection
    if state.terminate_only or driver.is_closed() or not driver.is_in_transaction():
        return
    adapted.run_async(lambda driver: driver.execute("ROLLBACK"))

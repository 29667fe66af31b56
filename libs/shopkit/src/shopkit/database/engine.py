"""Async SQLAlchemy 2 engine and sessions, the declarative base every service's models use,
and the tables the shared runtime needs in every service's database."""

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import asyncpg
import orjson
from sqlalchemy import (
    BigInteger,
    DateTime,
    Index,
    MetaData,
    Select,
    String,
    event,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InvalidatePoolError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from shopkit.database import transaction
from shopkit.database.gate import gate_of, guard
from shopkit.ops import tracing
from shopkit.settings import ServiceSettings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {datetime: DateTime(timezone=True)}


class OutboxRow(Base):
    """An event waiting to be published; written in the transaction of the change that caused it."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_unsent", "id", postgresql_where=text("sent_at IS NULL")),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    event_id: Mapped[Any] = mapped_column(UUID(as_uuid=True), unique=True)
    topic: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(100))
    envelope: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    trace_context: Mapped[dict[str, str] | None] = mapped_column(JSONB, default=None)
    """The W3C trace context of the transaction that staged the event (None untraced)."""


class ProcessedEvent(Base):
    """The idempotent consumer's memory: written in the same transaction as the event's effect."""

    __tablename__ = "processed_events"
    __table_args__ = (Index("ix_processed_events_processed_at", "processed_at"),)

    consumer: Mapped[str] = mapped_column(String(200), primary_key=True)
    event_id: Mapped[Any] = mapped_column(UUID(as_uuid=True), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(server_default=func.now())


class IdempotencyKey(Base):
    """A finished request under an Idempotency-Key, replayed on retries (kept ≥ 24 h)."""

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(200), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int]
    response: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def ssl_mode(settings: ServiceSettings) -> str:
    """The TLS mode asyncpg gets: `auto` means none on loopback, `prefer` elsewhere."""
    if settings.db_ssl != "auto":
        return settings.db_ssl
    host = make_url(settings.database_url).host or "localhost"
    return "disable" if host in LOOPBACK_HOSTS or host.startswith("/") else "prefer"


def create_engine(settings: ServiceSettings) -> AsyncEngine:
    """A fixed pool (no overflow churn) behind a gate that serves waiters in arrival order
    (shopkit.database.gate); a request that cannot get a connection within db_pool_timeout_s
    fails with sqlalchemy's TimeoutError (answered 503). Its transactions are sent on the
    driver's connection (shopkit.database.transaction), so the driver's own statements
    (Prepared) share them. A connection the server closed is never handed out
    (`_refuse_closed`)."""
    engine = create_async_engine(
        settings.database_url,
        **transaction.ENGINE_OPTIONS,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=settings.db_pool_pre_ping,
        pool_recycle=settings.db_pool_recycle_s,
        pool_timeout=settings.db_pool_timeout_s,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        connect_args={
            "server_settings": {
                "statement_timeout": str(settings.db_statement_timeout_ms),
                "application_name": settings.service_name,
            },
            "timeout": 10,
            "ssl": ssl_mode(settings),
        },
    )
    transaction.own_transactions(engine)
    event.listen(engine.sync_engine, "checkout", _refuse_closed)
    guard(engine, settings.db_pool_size + settings.db_max_overflow, settings.db_pool_timeout_s)
    tracing.instrument_engine(engine)
    return engine


def _refuse_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """The pool's checkout event: a connection the server closed (PostgreSQL restarted, or ended
    that backend) is replaced before anything is sent on it, instead of failing the statement
    it was taken for. asyncpg reads the server's goodbye and the end of the socket as they come,
    so `is_closed()` knows without a round trip (the pre-ping setting costs three per checkout).

    Raising InvalidatePoolError is SQLAlchemy's public way of saying so from this event: the
    pool reconnects this entry at once (a database still away fails the checkout with its
    connection error, answered 503) and recycles, at their next checkout, every connection
    opened before now: when one is found closed the server restarted, and the others predate
    the restart too, even any whose end asyncpg has not read yet. Each process's pool finds
    this once, at its first checkout after the restart, and no request fails for it."""
    if dbapi_connection.driver_connection.is_closed():
        raise InvalidatePoolError("the server closed this pooled connection")


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def autocommit(session: AsyncSession) -> AsyncSession:
    """Makes each statement of `session` its own transaction: a use case of ONE statement then
    costs one round trip (no BEGIN, no COMMIT). Only this session's connection, while it has
    it: the next one from the pool is transactional again (shopkit.database.transaction)."""
    await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    return session


_POOL_BRIDGE: Final = AsyncSession()
"""Runs the pool's synchronous code from asyncio through `run_sync`, SQLAlchemy's public bridge
(the session itself is never used): giving a connection back may do I/O (closing a broken or
surplus connection, rolling back one left inside a transaction). A Connection object around the
pooled connection, as `engine.connect()` makes, cost a third more CPU per statement alone."""


def _give_back(_: Any, pooled: PoolProxiedConnection, error: BaseException | None) -> None:
    if error is not None:
        pooled.invalidate(error if isinstance(error, Exception) else None)
    pooled.close()


async def _alone(
    engine: AsyncEngine, statement: "Prepared", params: Mapping[str, Any]
) -> asyncpg.Record | None:
    """`statement` on a connection of `engine`'s pool that nothing is begun on (it commits
    alone). The pool hands out no connection the server had closed (`_refuse_closed`); one that
    breaks under the statement (the server went away meanwhile) is invalidated, and the failure
    reads as SQLAlchemy's lost connection, transient (shopkit.ops.faults): a request then gets
    503, not 500, as with a statement in a session.

    A statement that may run twice (`Prepared.rerunnable`, a read) is then run once more on
    another connection: a connection can end under a statement without the database being
    away (its backend ended alone, or asyncpg had not yet read that the server closed it), and
    if the database is away, that checkout fails as any request's would (503). A write
    is not: once sent it may have committed, and only its caller knows whether doing it again
    is harmless (a charge is not). What was surely never sent (the pool's connection found
    closed at checkout) is retried for every statement, by the pool itself."""
    try:
        return await _on_pooled_connection(engine, statement, params)
    except DBAPIError as error:
        if not (error.connection_invalidated and statement.rerunnable):
            raise
    return await _on_pooled_connection(engine, statement, params)


async def _on_pooled_connection(
    engine: AsyncEngine, statement: "Prepared", params: Mapping[str, Any]
) -> asyncpg.Record | None:
    pooled = await engine.raw_connection()
    broken: BaseException | None = None
    try:
        driver: asyncpg.Connection = pooled.driver_connection
        try:
            with tracing.statement_span(statement.sql):
                row: asyncpg.Record | None = await driver.fetchrow(
                    statement.sql, *statement.args(params)
                )
        except BaseException as exc:
            if driver.is_closed():
                broken = exc
            raise
        return row
    except Exception as exc:
        if broken is None:
            raise
        raise DBAPIError.instance(
            statement.sql, None, exc, Exception, connection_invalidated=True
        ) from exc
    finally:
        await _POOL_BRIDGE.run_sync(_give_back, pooled, broken)


_ASYNCPG: Final = asyncpg_dialect.dialect()  # type: ignore[no-untyped-call]


class Prepared:
    """A Core or text() statement compiled once for asyncpg (`$n` parameters in a fixed order)
    and run by the driver on the session's own connection, inside the session's transaction
    (which is the driver's: shopkit.database.transaction).
    SQLAlchemy's per-statement execution (cache-key traversal, execution context, cursor,
    result) cost 140 µs of CPU per statement here, the driver alone 50 µs: for the statements
    every saga event runs. Rows are asyncpg Records (by column name or position); parameters go
    through the statement's types' bind processors, results through the connection's codecs."""

    def __init__(self, statement: ClauseElement, *, rerunnable: bool | None = None) -> None:
        """`rerunnable`: whether running the statement twice does what running it once does, so
        that `alone` may run it again when its connection broke under it. By default only a
        SELECT construct that compiles to a plain SELECT (no WITH: PostgreSQL takes a
        data-modifying statement only in a top-level WITH); a text() statement says so itself."""
        compiled = statement.compile(dialect=_ASYNCPG)
        assert isinstance(compiled, SQLCompiler)
        self.sql: Final = compiled.string
        self.rerunnable: Final = (
            rerunnable
            if rerunnable is not None
            else isinstance(statement, Select) and self.sql.lstrip().upper().startswith("SELECT")
        )
        self._names = tuple(compiled.positiontup or ())
        binds = [compiled.binds[name] for name in self._names]
        self._processors = tuple(
            bind.type.dialect_impl(_ASYNCPG).bind_processor(_ASYNCPG) for bind in binds
        )
        # Literals in the statement (a constant in a WHERE) are parameters with their value.
        self._fixed = {
            name: bind.effective_value
            for name, bind in zip(self._names, binds, strict=True)
            if not bind.required
        }

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        values = [
            params[name] if name in params or name not in self._fixed else self._fixed[name]
            for name in self._names
        ]
        return [
            value if process is None else process(value)
            for value, process in zip(values, self._processors, strict=True)
        ]

    async def fetch(self, session: AsyncSession, **params: Any) -> list[asyncpg.Record]:
        connection = await session.connection()  # the session's transaction begins here
        driver = transaction.driver_of(connection)
        try:
            with tracing.statement_span(self.sql):
                rows: list[asyncpg.Record] = await driver.fetch(self.sql, *self.args(params))
        except Exception as exc:
            if (gone := await transaction.lost(connection, driver, self.sql, exc)) is not None:
                raise gone from exc
            raise
        return rows

    async def fetchrow(self, session: AsyncSession, **params: Any) -> asyncpg.Record | None:
        rows = await self.fetch(session, **params)
        return rows[0] if rows else None

    async def alone(self, engine: AsyncEngine, **params: Any) -> asyncpg.Record | None:
        """The statement alone, without a session, on a connection of `engine`'s pool in
        autocommit: its own transaction, one round trip. For a hot read, or a change that is
        one statement (a charge). SQLAlchemy's session, ORM and result layers were three
        quarters of a product read's CPU."""
        gate = gate_of(engine)
        if gate is None:
            return await _alone(engine, self, params)
        await gate.acquire()
        try:
            return await _alone(engine, self, params)
        finally:
            gate.release()

    async def alone_ungated(self, engine: AsyncEngine, **params: Any) -> asyncpg.Record | None:
        """As `alone`, for work that holds a permit of `engine`'s gate already (a unit of
        work: shopkit.database.gate)."""
        return await _alone(engine, self, params)

    async def executemany(self, session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
        connection = await session.connection()
        driver = transaction.driver_of(connection)
        try:
            with tracing.statement_span(self.sql):
                await driver.executemany(self.sql, [self.args(row) for row in rows])
        except Exception as exc:
            if (gone := await transaction.lost(connection, driver, self.sql, exc)) is not None:
                raise gone from exc
            raise


async def fill_pool(engine: AsyncEngine, size: int) -> None:
    """Opens `size` connections of the pool now, together, and gives them back to it: the
    process pays for its backends at start, not in its first seconds of load."""
    connections = await asyncio.gather(*(engine.connect().start() for _ in range(size)))
    for connection in connections:
        await connection.close()


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))

"""The unit of work: one database transaction, the events recorded in it, and what must happen
once it has committed. It is the one way a transaction begins, in every service, for an HTTP
request and a Kafka event alike.

Where a transaction begins: in the use case (service/), never in a route, a dependency or a
repository. A use case is given a unit-of-work factory (an HTTP use case the API pool's,
`runtime.api_unit_of_work`; a worker's `runtime.unit_of_work`) and opens one itself:

    async def pay(units: UnitOfWorkFactory, order_id: UUID, amount: int, now: datetime) -> Order:
        async with units() as uow:
            order = await OrderRepository(uow.session).get_for_update(order_id)
            order.record_payment(amount, now)
            uow.collect(order)          # the events the aggregate recorded
            await uow.commit()          # outbox rows + effects commit together
        return order

A Kafka handler (`handler(uow, event, envelope)`) is handed the unit of work of its batch by the
consumer engine (shopkit.messaging.consumer), which commits it: the handler and the HTTP use
case make the same repository calls on `uow.session`. Repositories never begin, commit or roll
back: they work on the session (or run `Prepared` statements) of the unit of work they are given,
and return domain objects or plain data (dataclasses, NamedTuples), never ORM rows. Routes
parse, authorize, call one use case and answer; they hold no session.

It rolls back unless committed, so a read is a unit of work that does not commit. Three
operations keep the cheap cases cheap:

- `await uow.read_only()`: the session with each statement its own transaction (autocommit).
  A read of one statement (a consistent snapshot on its own) costs one round trip, no BEGIN and
  no ROLLBACK. The unit of work then commits nothing.
- `await uow.alone(STATEMENT, **params)`: a use case that is ONE statement (a charge, a hot read)
  runs it as its whole unit of work, without a session, on a pooled connection in its own
  transaction: one round trip, committed when it returns. (SQLAlchemy's session, ORM and result
  layers were three quarters of a product read's CPU.)
- `uow.insert(table, rows)`: rows a use case only inserts are handed over instead of executed
  at once. When the unit of work then has read and written nothing else, its inserts and its
  events go to the database as ONE statement in its own transaction (one round trip instead of
  BEGIN, an INSERT per table and COMMIT), e.g. placing an order. That statement is compiled once
  per shape (tables, rows, columns) and run by the driver (shopkit.database.engine.Prepared):
  building and compiling it through SQLAlchemy for every order placed was a fifth of the order
  service's CPU.

It takes a permit of its engine's gate when it starts (first come, first served:
shopkit.database.gate) and gives it back when it ends. Its session is opened on first use and
takes a connection from the pool at its first statement, and that statement, SQLAlchemy's or the
driver's, begins the transaction (shopkit.database.transaction): a unit of work that only runs
`alone()` or only inserts costs one small object and a permit. The staged events become outbox rows in ONE multi-row INSERT just
before the commit, so the relay (woken by that commit) publishes them, never an event of a
rolled-back change. A consumer's batch shares one unit of work across its events.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Protocol, Self, cast

import asyncpg
from sqlalchemy import ColumnElement, Insert, Interval, Table, bindparam, func, insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from shop_contracts import Envelope, Event
from shopkit.database.engine import OutboxRow, Prepared, autocommit
from shopkit.database.gate import FairGate, gate_of
from shopkit.ops import tracing

_outbox = cast(Table, OutboxRow.__table__)
_STAGE = Prepared(
    insert(_outbox)
    .values(
        {
            c: bindparam(c)
            for c in ("event_id", "topic", "key", "event_type", "envelope", "trace_context")
        }
    )
    .inline()  # no RETURNING of the new ids: nobody reads them
)
"""A transaction's staged events, as one executemany run by the driver (shopkit.database.engine.Prepared)."""


@dataclass(frozen=True)
class DbNow:
    """A value to `insert()`: the database's clock when the row is written, plus `offset` (e.g.
    a deadline that a sweeper compares with the same clock, never a process's)."""

    offset: timedelta = timedelta(0)


class RecordsEvents(Protocol):
    def pull_events(self) -> Iterable[Event]: ...


class UnitOfWork:
    def __init__(
        self,
        sessions: Callable[[], AsyncSession],
        producer: str,
        engine: AsyncEngine | None = None,
    ) -> None:
        """`sessions` makes the unit of work's session (when it needs one); `engine`, the pool
        `alone()` and the all-in-one insert run on (by default the session's)."""
        self._sessions = sessions
        self._engine = engine
        self._session: AsyncSession | None = None
        self.producer = producer
        self._staged: list[dict[str, Any]] = []
        self._inserts: list[tuple[Table, list[dict[str, Any]]]] = []
        self._after_commit: list[Callable[[], None]] = []
        self._committed = False

    async def __aenter__(self) -> Self:
        self._gate: FairGate | None = gate_of(self.engine)
        if self._gate is not None:
            await self._gate.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            session = self._session
            if session is not None:
                try:
                    if not self._committed:
                        await session.rollback()
                finally:
                    await session.close()
        finally:
            if self._gate is not None:
                self._gate.release()

    @property
    def session(self) -> AsyncSession:
        """The transaction's session, opened on first use (its transaction begins with its
        first statement)."""
        if self._session is None:
            self._session = self._sessions()
        return self._session

    @property
    def engine(self) -> AsyncEngine:
        """The pool the unit of work's connection comes from."""
        if self._engine is None:
            bind = getattr(self._sessions, "kw", {}).get("bind")  # an async_sessionmaker's
            self._engine = cast(AsyncEngine, bind if bind is not None else self.session.bind)
        return self._engine

    async def read_only(self) -> AsyncSession:
        """The session for reads only, each statement its own transaction (autocommit): a read
        of one statement costs one round trip, no BEGIN and no ROLLBACK."""
        return await autocommit(self.session)

    async def alone(self, statement: Prepared, **params: Any) -> asyncpg.Record | None:
        """`statement` as the unit of work's whole work: in its own transaction on a pooled
        connection (under the unit of work's permit), one round trip, committed when it
        returns; its first row."""
        if self._session is not None or self._staged or self._inserts:
            raise RuntimeError("alone() is the whole unit of work: nothing before it")
        self._committed = True
        return await statement.alone_ungated(self.engine, **params)

    def emit(self, event: Event, occurred_at: datetime | None = None) -> Envelope:
        """Stage `event`: published if, and only if, this unit of work commits."""
        envelope = Envelope.wrap(event, producer=self.producer, occurred_at=occurred_at)
        self._staged.append(
            {
                "event_id": envelope.event_id,
                "topic": event.topic,
                "key": str(event.order_id),
                "event_type": envelope.event_type,
                "envelope": envelope.model_dump(mode="json"),
                "trace_context": tracing.carrier(),
            }
        )
        return envelope

    def collect(self, *aggregates: RecordsEvents) -> None:
        """Stage the events the aggregates recorded since they were loaded."""
        for aggregate in aggregates:
            for event in aggregate.pull_events():
                self.emit(event)

    def insert(self, table: Table, rows: list[dict[str, Any]]) -> None:
        """Insert `rows` into `table` when the unit of work commits (in the order given)."""
        if rows:
            self._inserts.append((table, rows))

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the transaction has committed (metrics, wake-ups): never for a
        change that was rolled back."""
        self._after_commit.append(callback)

    @property
    def staged(self) -> int:
        return len(self._staged)

    async def commit(self) -> None:
        writes = self._inserts + ([(_outbox, self._staged)] if self._staged else [])
        self._inserts, self._staged = [], []
        if writes and (self._session is None or not self._session.in_transaction()):
            # All there is to do is one statement: its own transaction, on a pooled connection
            # (under the unit of work's permit).
            await _all_in_one(writes).alone_ungated(self.engine, **_parameters(writes))
        elif self._session is not None:
            for table, rows in writes:
                # A statement per table: rows may carry SQL expressions (a deadline on the
                # database's clock); outbox rows go as one executemany.
                if table is _outbox:
                    await _STAGE.executemany(self.session, rows)
                else:
                    await self.session.execute(_values(table, rows))
            await self.session.commit()
        self._committed = True
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            callback()


UnitOfWorkFactory = Callable[[], UnitOfWork]


Shape = tuple[tuple[Table, tuple[tuple[tuple[str, bool], ...], ...]], ...]
_PREPARED: dict[Shape, Prepared] = {}
_MOST_SHAPES = 256


def _all_in_one(writes: list[tuple[Table, list[dict[str, Any]]]]) -> Prepared:
    """`WITH w0 AS (INSERT …), w1 AS (INSERT …) INSERT …`: the inserts, in order, as one
    statement, compiled once per shape (which tables, how many rows, which columns, which of
    them the database's clock); `_parameters` gives the values of one unit of work."""
    shape: Shape = tuple(
        (
            table,
            tuple(tuple((c, isinstance(v, DbNow)) for c, v in row.items()) for row in rows),
        )
        for table, rows in writes
    )
    prepared = _PREPARED.get(shape)
    if prepared is None:
        *first, last = [
            _insert(
                table, [[(f"p{i}_{j}_{c}", c, now) for c, now in row] for j, row in enumerate(rows)]
            )
            for i, (table, rows) in enumerate(shape)
        ]
        statement = last
        for n, earlier in enumerate(first):
            statement = statement.add_cte(earlier.cte(f"w{n}"))
        if len(_PREPARED) >= _MOST_SHAPES:  # shapes are few; never grow without bound
            _PREPARED.clear()
        prepared = _PREPARED[shape] = Prepared(statement)
    return prepared


def _insert(table: Table, rows: list[list[tuple[str, str, bool]]]) -> Insert:
    """INSERT … VALUES with a named parameter per value: (parameter, column, database clock)."""
    values: list[dict[str, ColumnElement[Any]]] = [
        {
            column: (
                func.now() + bindparam(name, type_=Interval())
                if now
                else bindparam(name, type_=table.c[column].type)
            )
            for name, column, now in row
        }
        for row in rows
    ]
    return insert(table).values(values[0] if len(values) == 1 else values).inline()


def _parameters(writes: list[tuple[Table, list[dict[str, Any]]]]) -> dict[str, Any]:
    return {
        f"p{i}_{j}_{c}": v.offset if isinstance(v, DbNow) else v
        for i, (_, rows) in enumerate(writes)
        for j, row in enumerate(rows)
        for c, v in row.items()
    }


def _values(table: Table, rows: list[dict[str, Any]]) -> Insert:
    """`INSERT … VALUES` inside a transaction that did more (a statement per table); for one
    row as `.values(row)`, which SQLAlchemy compiles once and then takes from its cache."""
    return insert(table).values(
        [
            {c: func.now() + v.offset if isinstance(v, DbNow) else v for c, v in row.items()}
            for row in rows
        ]
        if len(rows) > 1
        else {c: func.now() + v.offset if isinstance(v, DbNow) else v for c, v in rows[0].items()}
    )

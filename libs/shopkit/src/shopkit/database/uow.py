"""The unit of work: one database transaction, the events recorded in it, and what must happen
once it has committed. Every use case and every saga step of every service runs in one:

    async with runtime.unit_of_work() as uow:
        order = await OrderRepository(uow.session).get_for_update(order_id)
        order.record_payment(amount, now)
        uow.collect(order)          # the events the aggregate recorded
        await uow.commit()          # outbox rows + effects commit together

It rolls back unless committed. It takes a permit of its engine's gate when it starts (first
come, first served: shopkit.database.gate) and gives it back when it ends; its session takes a
connection from the pool at its first statement, and that statement, SQLAlchemy's or the
driver's, begins the transaction (shopkit.database.transaction). The staged events become
outbox rows in ONE multi-row INSERT just before the commit, so the relay (woken by that commit)
publishes them, never an event of a rolled-back change. A consumer's batch shares one unit of
work across its events.

Rows a use case only inserts can be handed over with `insert()` instead of executed at once:
when the unit of work then has read and written nothing else, its inserts and its events go to
the database as ONE statement in its own transaction (one round trip instead of BEGIN, an
INSERT per table and COMMIT), e.g. placing an order. That statement is compiled once per shape
(tables, rows, columns) and run by the driver (shopkit.database.engine.Prepared): building and compiling it
through SQLAlchemy for every order placed was a fifth of the order service's CPU.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Protocol, Self, cast

from sqlalchemy import ColumnElement, Insert, Interval, Table, bindparam, func, insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shop_contracts import Envelope, Event
from shopkit.database.engine import OutboxRow, Prepared
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
    def __init__(self, sessions: async_sessionmaker[AsyncSession], producer: str) -> None:
        self._sessions = sessions
        self.producer = producer
        self._staged: list[dict[str, Any]] = []
        self._inserts: list[tuple[Table, list[dict[str, Any]]]] = []
        self._after_commit: list[Callable[[], None]] = []
        self._committed = False

    async def __aenter__(self) -> Self:
        self.session = self._sessions()
        self._engine = cast(AsyncEngine, self.session.bind)
        self._gate: FairGate | None = gate_of(self._engine)
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
            try:
                if not self._committed:
                    await self.session.rollback()
            finally:
                await self.session.close()
        finally:
            if self._gate is not None:
                self._gate.release()

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
        if writes and not self.session.in_transaction():
            # All there is to do is one statement: its own transaction.
            await _all_in_one(writes).alone_ungated(self._engine, **_parameters(writes))
        else:
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

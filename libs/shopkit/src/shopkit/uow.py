"""The unit of work: one database transaction, the events recorded in it, and what must happen
once it has committed. Every use case and every saga step of every service runs in one:

    async with runtime.unit_of_work() as uow:
        order = await OrderRepository(uow.session).get_for_update(order_id)
        order.record_payment(amount, now)
        uow.collect(order)          # the events the aggregate recorded
        await uow.commit()          # outbox rows + effects commit together

It rolls back unless committed. The staged events become outbox rows in ONE multi-row INSERT
just before the commit, so the relay (woken by that commit) publishes them, never an event of a
rolled-back change. A consumer's batch shares one unit of work across its events.

Rows a use case only inserts can be handed over with `insert()` instead of executed at once:
when the unit of work then has read and written nothing else, its inserts and its events go to
the database as ONE statement in its own transaction (one round trip instead of BEGIN, an
INSERT per table and COMMIT), e.g. placing an order.
"""

from collections.abc import Callable, Iterable
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self, cast

from sqlalchemy import Insert, Table, bindparam, insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shop_contracts import Envelope, Event
from shopkit import tracing
from shopkit.db import OutboxRow, Prepared, autocommit

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
"""A transaction's staged events, as one executemany run by the driver (shopkit.db.Prepared)."""


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
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if not self._committed:
                await self.session.rollback()
        finally:
            await self.session.close()

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
            await autocommit(self.session)  # all there is to do is one statement
            await self.session.execute(_all_in_one(writes))
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


def _all_in_one(writes: list[tuple[Table, list[dict[str, Any]]]]) -> Insert:
    """`WITH w0 AS (INSERT …), w1 AS (INSERT …) INSERT …`: the inserts, in order, as one."""
    *first, (table, rows) = writes
    statement = _values(table, rows)
    for n, (earlier, earlier_rows) in enumerate(first):
        statement = statement.add_cte(_values(earlier, earlier_rows).cte(f"w{n}"))
    return statement


def _values(table: Table, rows: list[dict[str, Any]]) -> Insert:
    """`INSERT … VALUES`: for one row as `.values(row)`, which SQLAlchemy compiles once and then
    takes from its cache (the values become parameters); a multi-row VALUES is never cached
    and was compiled again for every order placed (13 % of the order service's CPU)."""
    return insert(table).values(rows[0] if len(rows) == 1 else rows)

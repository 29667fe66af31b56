"""The outbox relay: publishes the events units of work staged (see uow.py).

It sleeps until a transaction that staged events commits — a trigger on the outbox table
NOTIFYs `shop_outbox` (migrations.OUTBOX_WAKEUP_V2) — then publishes unsent rows in id order,
in batches, with the idempotent producer and marks them sent in the transaction that claimed
them. While idle it only looks once per `outbox_poll_interval_s` (a NOTIFY lost while the
listener reconnected is caught there too).

One relay at a time per database holds `pg_try_advisory_xact_lock` for a batch, so N replicas
never reorder a key. If the relay dies after publishing but before the commit, the rows are
published again on the next run: consumers dedupe on the event id (at-least-once publish,
exactly-once effect).
"""

import asyncio
from datetime import UTC, datetime
from typing import Final, cast

from sqlalchemy import BigInteger, Table, Text, bindparam, func, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shopkit.database.engine import OutboxRow, Prepared
from shopkit.database.listen import PgListener, first_of
from shopkit.database.migrations import OUTBOX_CHANNEL
from shopkit.messaging.kafka import EVENT_TYPE_HEADER, Message, Producer
from shopkit.messaging.pace import Pace
from shopkit.ops.logging import get_logger
from shopkit.ops.metrics import OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE, OUTBOX_PUBLISHED
from shopkit.ops.tracing import kafka_headers
from shopkit.settings import ServiceSettings

log = get_logger(__name__)

_RELAY_LOCK: Final = 7_202_611_251
OBSERVE_EVERY_S: Final = 10.0

_unsent = Prepared(
    select(
        OutboxRow.id,
        OutboxRow.topic,
        OutboxRow.key,
        OutboxRow.event_type,
        sql_cast(OutboxRow.envelope, Text).label("envelope"),
        OutboxRow.trace_context,
    )
    .where(
        # an InitPlan: evaluated once per statement, before any row is read
        select(func.pg_try_advisory_xact_lock(_RELAY_LOCK)).scalar_subquery(),
        OutboxRow.sent_at.is_(None),
    )
    .order_by(OutboxRow.id)
    .limit(bindparam("batch"))
)
"""The next unsent rows, in id order, if this transaction gets the relay's lock (else none).
Run by the driver (shopkit.database.engine.Prepared), as the mark below: a relay round per linger each."""
_mark_sent = Prepared(
    update(cast(Table, OutboxRow.__table__))
    .where(OutboxRow.id == func.any(bindparam("ids", type_=ARRAY(BigInteger))))
    .values(sent_at=func.now())
)


class OutboxRelay:
    def __init__(
        self,
        settings: ServiceSettings,
        sessions: async_sessionmaker[AsyncSession],
        producer: Producer,
        wakeups: PgListener | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.producer = producer
        self._wake = asyncio.Event()
        if wakeups is not None:
            wakeups.subscribe(OUTBOX_CHANNEL, lambda _payload: self._wake.set())

    def wake(self) -> None:
        """Look for unsent events now (an in-process commit, a reconnect)."""
        self._wake.set()

    async def publish_batch(self) -> int:
        """Publish up to one batch; returns how many rows were published."""
        async with self.sessions() as session, session.begin():
            # One statement takes the relay's lock (its InitPlan) and the rows: none without it.
            rows = await _unsent.fetch(session, batch=self.settings.outbox_batch_size)
            if not rows:
                return 0
            await self.producer.send_all(
                Message(
                    self.settings.topic(row["topic"]),
                    value=row["envelope"].encode(),
                    key=row["key"].encode(),
                    headers=[
                        (EVENT_TYPE_HEADER, row["event_type"].encode()),
                        *kafka_headers(row["trace_context"]),
                    ],
                )
                for row in rows
            )
            await self._mark_sent(session, [row["id"] for row in rows])
        for row in rows:
            OUTBOX_PUBLISHED.labels(row["event_type"]).inc()
        return len(rows)

    async def _mark_sent(self, session: AsyncSession, ids: list[int]) -> None:
        await _mark_sent.fetch(session, ids=ids)

    async def observe(self) -> None:
        """Backlog metrics (published rows are pruned by shopkit.database.retention)."""
        async with self.sessions() as session:
            backlog, oldest = (
                await session.execute(
                    select(func.count(), func.min(OutboxRow.created_at)).where(
                        OutboxRow.sent_at.is_(None)
                    )
                )
            ).one()
        OUTBOX_BACKLOG.set(backlog)
        OUTBOX_OLDEST_AGE.set((datetime.now(UTC) - oldest).total_seconds() if oldest else 0)

    async def run(self, stop: asyncio.Event) -> None:
        log.info("outbox_relay_started")
        loop = asyncio.get_running_loop()
        next_observe = 0.0
        idle_wait = self.settings.outbox_poll_interval_s
        backoff = first_backoff = min(idle_wait, 1.0)
        pace = Pace(self.settings.outbox_linger_ms / 1000)
        while not stop.is_set():
            await pace.wait()
            pace.started()
            self._wake.clear()  # a commit from now on wakes the next round
            wait = idle_wait
            try:
                while (
                    await self.publish_batch() == self.settings.outbox_batch_size
                    and not stop.is_set()
                ):
                    pass
                if loop.time() >= next_observe:
                    await self.observe()
                    next_observe = loop.time() + OBSERVE_EVERY_S
                backoff = first_backoff
            except Exception:
                log.exception("outbox_relay_error", retry_in_s=backoff)
                wait = backoff
                backoff = min(backoff * 2, 5.0)
                self._wake.clear()  # a failing database: back off even if commits go on
            await first_of(stop, self._wake, within_s=wait)
        log.info("outbox_relay_stopped")

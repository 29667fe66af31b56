"""Transactional outbox.

`Outbox.stage()` adds an event to the caller's transaction: it is published only if that
transaction commits. `OutboxRelay` publishes unsent rows in id order with the idempotent
producer and marks them sent in the same transaction that claimed them. One relay at a time
per database holds `pg_try_advisory_xact_lock` for a batch, so N replicas never reorder a key.
If the relay dies after publishing but before the commit, the rows are published again on the
next run: consumers dedupe on the event id (at-least-once publish, exactly-once effect).
"""

import asyncio
from datetime import UTC, datetime, timedelta

import orjson
from aiokafka import AIOKafkaProducer
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shop_contracts import Envelope, Event
from shopkit.db import OutboxRow
from shopkit.logging import get_logger
from shopkit.metrics import OUTBOX_BACKLOG, OUTBOX_OLDEST_AGE, OUTBOX_PUBLISHED
from shopkit.settings import ServiceSettings

log = get_logger(__name__)

_RELAY_LOCK = 7_202_611_251
SENT_RETENTION = timedelta(days=1)


class Outbox:
    def __init__(self, producer: str) -> None:
        self.producer = producer

    def stage(
        self, session: AsyncSession, event: Event, occurred_at: datetime | None = None
    ) -> Envelope:
        envelope = Envelope.wrap(event, producer=self.producer, occurred_at=occurred_at)
        session.add(
            OutboxRow(
                event_id=envelope.event_id,
                topic=event.topic,
                key=str(event.order_id),
                event_type=envelope.event_type,
                envelope=envelope.model_dump(mode="json"),
            )
        )
        return envelope


class OutboxRelay:
    def __init__(
        self,
        settings: ServiceSettings,
        sessions: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.producer = producer

    async def publish_batch(self) -> int:
        """Publish up to one batch; returns how many rows were published."""
        async with self.sessions() as session, session.begin():
            if not await session.scalar(select(func.pg_try_advisory_xact_lock(_RELAY_LOCK))):
                return 0
            rows = (
                await session.execute(
                    select(
                        OutboxRow.id,
                        OutboxRow.topic,
                        OutboxRow.key,
                        OutboxRow.event_type,
                        OutboxRow.envelope,
                    )
                    .where(OutboxRow.sent_at.is_(None))
                    .order_by(OutboxRow.id)
                    .limit(self.settings.outbox_batch_size)
                )
            ).all()
            if not rows:
                return 0
            pending = [
                await self.producer.send(
                    self.settings.topic(row.topic),
                    value=orjson.dumps(row.envelope),
                    key=row.key.encode(),
                    headers=[("event_type", row.event_type.encode())],
                )
                for row in rows
            ]
            await asyncio.gather(*pending)
            await self._mark_sent(session, [row.id for row in rows])
        for row in rows:
            OUTBOX_PUBLISHED.labels(row.event_type).inc()
        return len(rows)

    async def _mark_sent(self, session: AsyncSession, ids: list[int]) -> None:
        await session.execute(
            update(OutboxRow).where(OutboxRow.id.in_(ids)).values(sent_at=func.now())
        )

    async def observe(self) -> None:
        async with self.sessions() as session:
            backlog, oldest = (
                await session.execute(
                    select(func.count(), func.min(OutboxRow.created_at)).where(
                        OutboxRow.sent_at.is_(None)
                    )
                )
            ).one()
            await session.execute(
                delete(OutboxRow).where(OutboxRow.sent_at < datetime.now(UTC) - SENT_RETENTION)
            )
            await session.commit()
        OUTBOX_BACKLOG.set(backlog)
        OUTBOX_OLDEST_AGE.set((datetime.now(UTC) - oldest).total_seconds() if oldest else 0)

    async def run(self, stop: asyncio.Event) -> None:
        log.info("outbox_relay_started")
        loop = asyncio.get_running_loop()
        next_observe = 0.0
        backoff = self.settings.outbox_poll_interval_s
        while not stop.is_set():
            try:
                published = await self.publish_batch()
                if loop.time() >= next_observe:
                    await self.observe()
                    next_observe = loop.time() + 5
                backoff = self.settings.outbox_poll_interval_s
            except Exception:
                log.exception("outbox_relay_error")
                published = 0
                backoff = min(backoff * 2, 5.0)
            if published < self.settings.outbox_batch_size:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
                except TimeoutError:
                    pass
        log.info("outbox_relay_stopped")

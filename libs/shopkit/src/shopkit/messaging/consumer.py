"""The saga steps' work on the consumer engine (shopkit.messaging.engine): idempotent and batched.

A poll's messages (up to `consumer_batch_size`, several partitions, each in its own order) are
handled in ONE unit of work: one multi-row insert of their `(consumer, event_id)` rows into
processed_events (shopkit.messaging.claims) tells which are new, their handlers run one after
the other in that transaction, the events they emit become outbox rows, and one commit makes it
all durable. The engine commits the offsets only after that (at most every
`consumer_commit_interval_s` under load: a redelivery after a crash is deduplicated anyway). A
redelivered event finds its row and changes nothing.

When a batch fails, the handler that raised is known: the events before it are redone as a
batch, the failing event is retried alone, in a transaction of its own, and the rest go on as a
batch — a poison event is isolated and never holds good ones back. When the commit failed or the
failure is the infrastructure's, every event goes alone. How an event alone is retried, and when
it is dead-lettered or the consumer restarts instead, is decided in shopkit.messaging.retry; an
event that times out on every attempt is told from an outage there by this consumer's probe, a
claim in processed_events rolled back (`_database_answers`).
"""

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shop_contracts import Envelope, Event
from shopkit.database.uow import UnitOfWork
from shopkit.messaging import claims, reading, retry
from shopkit.messaging.deadletter import dead_letter
from shopkit.messaging.dispatch import Inline
from shopkit.messaging.engine import ConsumerEngine, Record
from shopkit.messaging.kafka import Producer
from shopkit.ops.faults import is_transient
from shopkit.ops.logging import bound, get_logger
from shopkit.ops.metrics import (
    CONSUMER_BATCH,
    CONSUMER_WAITING,
    DEAD_LETTERED,
    DEAD_LETTERED_TIMED_OUT,
    EVENTS_CONSUMED,
)
from shopkit.settings import ServiceSettings

log = get_logger(__name__)

Handler = Callable[[UnitOfWork, Any, Envelope], Awaitable[None]]
"""A saga step: `handler(uow, event, envelope)`; it works in `uow.session` and emits events
with `uow.emit()`/`uow.collect()`; the consumer commits."""


@dataclass(frozen=True)
class Delivery:
    """A message this consumer has a handler for, decoded."""

    message: Record
    handler: Handler
    event: Event
    envelope: Envelope

    def log_fields(self, consumer: str) -> dict[str, str]:
        return {
            "order_id": str(self.envelope.order_id),
            "event_id": str(self.envelope.event_id),
            "event_type": self.envelope.event_type,
            "consumer": consumer,
        }


class BatchFailed(Exception):
    def __init__(self, index: int | None, error: Exception) -> None:
        super().__init__(repr(error))
        self.index = index
        """The delivery whose handler raised; None when the commit failed."""
        self.error = error


class EventConsumer:
    def __init__(
        self,
        settings: ServiceSettings,
        sessions: async_sessionmaker[AsyncSession],
        producer: Producer,
        *,
        group_id: str,
        topics: list[str],
        handlers: Mapping[type[Event], Handler],
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.producer = producer
        self.group_id = group_id
        self.topics = topics
        self.handlers = {cls.__name__: handler for cls, handler in handlers.items()}
        self.rule = retry.RetryRule.of(settings)
        self.timeouts = retry.Timeouts(self._database_answers)
        self.engine = ConsumerEngine(
            settings,
            group_id=group_id,
            topics=topics,
            work=self.process,
            dispatch=Inline(settings.consumer_linger_ms / 1000),
        )

    async def run(self, stop: asyncio.Event) -> None:
        await self.engine.run(stop)

    async def process(self, messages: Sequence[Record]) -> None:
        """Handle `messages` (each partition's in order); returns when each is handled, was a
        duplicate or was dead-lettered; raises when the infrastructure is down."""
        deliveries = [d for m in messages if (d := await self._decode(m)) is not None]
        await self._process(deliveries)

    async def _process(self, deliveries: list[Delivery]) -> None:
        while deliveries:
            try:
                await self._run_batch(deliveries)
                return
            except BatchFailed as failed:
                if failed.index is None or is_transient(failed.error):
                    log.warning(
                        "batch_failed_one_at_a_time",
                        consumer=self.group_id,
                        events=len(deliveries),
                        error=repr(failed.error),
                    )
                    for delivery in deliveries:
                        await self._handle_alone(delivery)
                    return
                good, poison, rest = (
                    deliveries[: failed.index],
                    deliveries[failed.index],
                    deliveries[failed.index + 1 :],
                )
                if good:
                    await self._process(good)
                await self._handle_alone(poison, first_error=failed.error)
                deliveries = rest

    async def _run_batch(self, deliveries: list[Delivery]) -> None:
        outcomes: Counter[tuple[str, str]] = Counter()
        try:
            async with UnitOfWork(self.sessions, self.settings.service_name) as uow:
                fresh = await claims.claim(
                    uow.session, self.group_id, [d.envelope.event_id for d in deliveries]
                )
                for index, delivery in enumerate(deliveries):
                    event_id = delivery.envelope.event_id
                    if event_id not in fresh:
                        outcomes[(delivery.envelope.event_type, "duplicate")] += 1
                        continue
                    fresh.discard(event_id)  # the same event twice in one batch: once
                    message = delivery.message
                    with (
                        bound(**delivery.log_fields(self.group_id)),
                        reading.span(
                            "process",
                            delivery.envelope,
                            message.headers,
                            message.topic,
                            self.group_id,
                        ),
                    ):
                        try:
                            await delivery.handler(uow, delivery.event, delivery.envelope)
                        except Exception as exc:
                            raise BatchFailed(index, exc) from exc
                    outcomes[(delivery.envelope.event_type, "handled")] += 1
                await uow.commit()
        except BatchFailed:
            raise
        except Exception as exc:
            raise BatchFailed(None, exc) from exc
        CONSUMER_BATCH.labels(self.group_id).observe(len(deliveries))
        for (event_type, outcome), count in outcomes.items():
            EVENTS_CONSUMED.labels(self.group_id, event_type, outcome).inc(count)

    async def _handle_alone(self, delivery: Delivery, first_error: Exception | None = None) -> None:
        """One event in its own transaction, retried as shopkit.messaging.retry decides; dead-
        lettered when it gives up."""

        async def attempt() -> None:
            try:
                await self._run_batch([delivery])
            except BatchFailed as failed:
                raise failed.error from failed

        def waiting(on: bool) -> None:
            CONSUMER_WAITING.labels(self.group_id).set(int(on))

        with bound(**delivery.log_fields(self.group_id)):
            try:
                await retry.settle(
                    attempt,
                    self.rule,
                    first_error=first_error,
                    on_waiting=waiting,
                    timeouts=self.timeouts,
                    key=delivery.envelope.event_id,
                )
            except retry.GaveUp as gave_up:
                if isinstance(gave_up, retry.TimedOut):
                    DEAD_LETTERED_TIMED_OUT.labels(self.group_id).inc()
                await self._dead_letter(delivery.message, gave_up.reason, gave_up.attempts)

    async def _database_answers(self) -> bool:
        """The step every event takes, without an event: a claim (of an id no event has) in a
        transaction that is rolled back. True when it works: an event whose handler keeps
        timing out meanwhile times out by its own fault, not the database's."""
        try:
            async with UnitOfWork(self.sessions, self.settings.service_name) as uow:
                await claims.claim(uow.session, self.group_id, [uuid.uuid4()])
        except Exception as exc:
            log.warning("database_probe_failed", consumer=self.group_id, error=repr(exc))
            return False
        return True

    async def _decode(self, message: Record) -> Delivery | None:
        """The delivery, or None for another consumer's event type (shared topics) and for a
        message that cannot be read (dead-lettered at once: no retry can fix it)."""
        if not reading.wanted(message.headers, self.handlers, self.group_id):
            return None  # told by its header: no need to read it

        async def unreadable(error: str) -> None:
            await self._dead_letter(message, error)

        read = await reading.read(message.value, self.handlers, unreadable)
        if read is None:
            return None
        return Delivery(message, self.handlers[read.envelope.event_type], read.event, read.envelope)

    async def _dead_letter(self, message: Record, error: str, attempts: int | None = None) -> None:
        DEAD_LETTERED.labels(self.group_id).inc()
        await dead_letter(
            self.producer,
            self.settings,
            message,
            consumer=self.group_id,
            error=error,
            attempts=attempts,
        )

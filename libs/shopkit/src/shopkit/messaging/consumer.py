"""The idempotent, batched Kafka consumer every service's saga steps run in.

A poll's messages (up to `consumer_batch_size`, several partitions, each in its own order) are
handled in ONE unit of work: one multi-row insert of their `(consumer, event_id)` rows into
processed_events tells which are new, their handlers run one after the other in that
transaction, the events they emit become outbox rows, and one commit makes it all durable.
Offsets are committed only after the database commit (at most every
`consumer_commit_interval_s` under load: a redelivery after a crash is deduplicated anyway). A redelivered event finds its row and
changes nothing.

When a batch fails, the handler that raised is known: the events before it are redone as a
batch, the failing event is retried alone (`consumer_max_retries` times, with backoff) and then
sent to the dead-letter topic with the error in its headers, and the rest go on as a batch —
a poison event is isolated and never holds good ones back. Failures of the infrastructure
(`shopkit.ops.faults.is_transient`: a statement timeout, a deadlock, too many connections, the
database or the network down) are not the event's fault: the event is retried with capped backoff
for as long as they last, its partition waiting, and is never dead-lettered; after
`consumer_transient_patience_s` the consumer restarts from its committed offsets and goes on.
"""

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeAlias
from uuid import UUID

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from pydantic import ValidationError
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shop_contracts import Envelope, Event, UnknownEventType
from shopkit.database.engine import Prepared
from shopkit.database.uow import UnitOfWork
from shopkit.messaging.deadletter import dead_letter
from shopkit.messaging.kafka import (
    Producer,
    event_type_of,
    make_consumer,
    start_consumer,
    stop_consumer,
)
from shopkit.messaging.pace import Pace
from shopkit.ops import tracing
from shopkit.ops.faults import is_transient
from shopkit.ops.logging import bound, get_logger
from shopkit.ops.metrics import (
    CONSUMER_BATCH,
    CONSUMER_LAG,
    CONSUMER_WAITING,
    DEAD_LETTERED,
    EVENTS_CONSUMED,
)
from shopkit.settings import ServiceSettings

log = get_logger(__name__)

Handler = Callable[[UnitOfWork, Any, Envelope], Awaitable[None]]
"""A saga step: `handler(uow, event, envelope)`; it works in `uow.session` and emits events
with `uow.emit()`/`uow.collect()`; the consumer commits."""

Record: TypeAlias = ConsumerRecord[Any, Any]

_claim = Prepared(
    text(
        "INSERT INTO processed_events (consumer, event_id) "
        "SELECT :consumer, unnest(:event_ids) ON CONFLICT DO NOTHING RETURNING event_id"
    ).bindparams(bindparam("event_ids", type_=ARRAY(PgUUID(as_uuid=True))))
)
"""Claims a batch's events in one statement (run by the driver: it begins the batch's
transaction); returns the ids seen for the first time."""


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


class _Offsets:
    """Offsets of what the database has committed, committed to Kafka at most once per
    `interval_s` under load (each commit is a request to the broker), at once when the consumer
    goes idle, stops or loses partitions. A crash loses only the last interval's commits: those
    events are delivered again and found in processed_events."""

    def __init__(self, consumer: AIOKafkaConsumer, interval_s: float) -> None:
        self._consumer = consumer
        self._interval_s = interval_s
        self._pending: dict[TopicPartition, int] = {}
        self._last = 0.0

    def done(self, offsets: dict[TopicPartition, int]) -> None:
        self._pending.update(offsets)

    async def commit(self, *, due_only: bool, only: set[TopicPartition] | None = None) -> None:
        now = asyncio.get_running_loop().time()
        if not self._pending or (due_only and now - self._last < self._interval_s):
            return
        offsets = {tp: offset for tp, offset in self._pending.items() if only is None or tp in only}
        if offsets:
            await self._consumer.commit(offsets)
        for tp in offsets:
            del self._pending[tp]
        self._last = now


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, offsets: _Offsets) -> None:
        self.offsets = offsets

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        try:
            await self.offsets.commit(due_only=False, only=set(revoked))
        except Exception as exc:  # the next owner gets them again; dedupe makes that harmless
            log.warning("offsets_not_committed_on_revoke", error=repr(exc))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        return None


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

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 1.0
        while not stop.is_set():
            consumer = make_consumer(self.settings, self.group_id)
            offsets = _Offsets(consumer, self.settings.consumer_commit_interval_s)
            consumer.subscribe(
                [self.settings.topic(t) for t in self.topics], listener=_CommitOnRevoke(offsets)
            )
            try:
                await start_consumer(consumer)
                log.info("consumer_started", consumer=self.group_id, topics=self.topics)
                backoff = 1.0
                pace = Pace(self.settings.consumer_linger_ms / 1000)
                while not stop.is_set():
                    await pace.wait()
                    batches = await _unless_stopped(consumer, self.settings, stop)
                    if batches:
                        pace.started()
                        await self.process([m for msgs in batches.values() for m in msgs])
                        offsets.done({tp: msgs[-1].offset + 1 for tp, msgs in batches.items()})
                        self._observe_lag(consumer, batches)
                    await offsets.commit(due_only=bool(batches))
                await offsets.commit(due_only=False)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("consumer_crashed", consumer=self.group_id, retry_in_s=backoff)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
                except TimeoutError:
                    pass
                backoff = min(backoff * 2, 30.0)
            finally:
                await stop_consumer(consumer, self.settings.shutdown_timeout_s)
        log.info("consumer_stopped", consumer=self.group_id)

    def _observe_lag(
        self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[Record]]
    ) -> None:
        for tp, msgs in batches.items():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                CONSUMER_LAG.labels(self.group_id, tp.topic, tp.partition).set(
                    max(highwater - msgs[-1].offset - 1, 0)
                )

    async def process(self, messages: Sequence[Record]) -> None:
        """Handle `messages` (each partition's in order); returns when each is handled, was a
        duplicate or was dead-lettered; raises when the infrastructure is down."""
        deliveries = [d for m in messages if (d := await self._decode(m)) is not None]
        await self._process(deliveries, attempts_used=0)

    async def _process(self, deliveries: list[Delivery], attempts_used: int) -> None:
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
                        await self._handle_alone(delivery, attempts_used=0)
                    return
                good, poison, rest = (
                    deliveries[: failed.index],
                    deliveries[failed.index],
                    deliveries[failed.index + 1 :],
                )
                if good:
                    await self._process(good, attempts_used=0)
                await self._handle_alone(poison, attempts_used=1, last_error=failed.error)
                deliveries = rest

    async def _run_batch(self, deliveries: list[Delivery]) -> None:
        outcomes: Counter[tuple[str, str]] = Counter()
        try:
            async with UnitOfWork(self.sessions, self.settings.service_name) as uow:
                fresh = await self._claim(uow.session, [d.envelope.event_id for d in deliveries])
                for index, delivery in enumerate(deliveries):
                    event_id = delivery.envelope.event_id
                    if event_id not in fresh:
                        outcomes[(delivery.envelope.event_type, "duplicate")] += 1
                        continue
                    fresh.discard(event_id)  # the same event twice in one batch: once
                    with bound(**delivery.log_fields(self.group_id)), self._span(delivery):
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

    def _span(self, delivery: Delivery) -> AbstractContextManager[Any]:
        """The step's span, continuing the trace of the transaction that staged the event (a
        child of it): the events this step emits carry the trace on."""
        envelope = delivery.envelope
        return tracing.consumer_span(
            f"{envelope.event_type} process",
            delivery.message.headers,
            delivery.message.topic,
            lambda: {
                "messaging.consumer.group.name": self.group_id,
                "messaging.message.id": str(envelope.event_id),
                "shop.order_id": str(envelope.order_id),
            },
        )

    async def _claim(self, session: AsyncSession, event_ids: list[UUID]) -> set[UUID]:
        claimed = await _claim.fetch(session, consumer=self.group_id, event_ids=event_ids)
        return {row[0] for row in claimed}

    async def _handle_alone(
        self, delivery: Delivery, attempts_used: int, last_error: Exception | None = None
    ) -> None:
        """One event in its own transaction. A failure of its own is retried with backoff, then
        the event is dead-lettered; a transient one is retried while it lasts (see the module)."""
        attempts = self.settings.consumer_max_retries + 1
        failures, waits = attempts_used, 0
        loop = asyncio.get_running_loop()
        waiting_since: float | None = None
        with bound(**delivery.log_fields(self.group_id)):
            try:
                while True:
                    if last_error is not None:
                        if is_transient(last_error):
                            waiting_since = waiting_since or loop.time()
                            CONSUMER_WAITING.labels(self.group_id).set(1)
                            if (
                                loop.time() - waiting_since
                                > self.settings.consumer_transient_patience_s
                            ):
                                log.warning(
                                    "handler_waiting_for_infrastructure", error=repr(last_error)
                                )
                                raise last_error  # restart from the committed offsets
                            delay = min(
                                self.settings.consumer_retry_backoff_s * 2**waits,
                                self.settings.consumer_transient_backoff_max_s,
                            )
                            waits += 1
                            log.warning(
                                "handler_transient_failure",
                                retry_in_s=delay,
                                error=repr(last_error),
                            )
                        else:
                            if failures >= attempts:
                                break
                            delay = self.settings.consumer_retry_backoff_s * 2 ** max(
                                failures - 1, 0
                            )
                            log.warning("handler_failed", attempt=failures, error=repr(last_error))
                        await asyncio.sleep(delay)
                    try:
                        await self._run_batch([delivery])
                        return
                    except BatchFailed as failed:
                        last_error = failed.error
                        if not is_transient(last_error):
                            failures += 1
            finally:
                if waiting_since is not None:
                    CONSUMER_WAITING.labels(self.group_id).set(0)
            log.error("handler_gave_up", attempts=failures, error=repr(last_error))
            await self._dead_letter(delivery.message, f"{type(last_error).__name__}: {last_error}")

    async def _decode(self, message: Record) -> Delivery | None:
        """The delivery, or None for another consumer's event type (shared topics) and for a
        message that cannot be read (dead-lettered at once: no retry can fix it)."""
        if not self._may_handle(message):
            return None  # told by its header: no need to read it
        try:
            envelope = Envelope.model_validate_json(message.value)
        except ValidationError as exc:
            await self._dead_letter(message, f"unparseable envelope: {exc}")
            return None
        handler = self.handlers.get(envelope.event_type)
        if handler is None:
            return None
        try:
            event = envelope.event()
        except (ValidationError, UnknownEventType) as exc:
            with bound(order_id=str(envelope.order_id), event_id=str(envelope.event_id)):
                await self._dead_letter(message, f"invalid payload: {exc}")
            return None
        return Delivery(message, handler, event, envelope)

    def _may_handle(self, message: Record) -> bool:
        """False when the message's `event_type` header (set by every outbox relay) names an
        event this consumer has no handler for: most events on a shared topic are another
        consumer's, and reading their JSON would cost more than everything else done here."""
        event_type = event_type_of(message.headers)
        return event_type is None or event_type in self.handlers

    async def _dead_letter(self, message: Record, error: str) -> None:
        DEAD_LETTERED.labels(self.group_id).inc()
        await dead_letter(
            self.producer, self.settings, message, consumer=self.group_id, error=error
        )


_IDLE_POLL_MS = 10_000
"""How long a poll waits while there is nothing to read (a message ends it at once, and so does
the stop): idle, the loop wakes this rarely; a one-second poll was a wakeup a second each."""


async def _unless_stopped(
    consumer: AIOKafkaConsumer, settings: ServiceSettings, stop: asyncio.Event
) -> dict[TopicPartition, list[Record]]:
    """A poll's batches, or none when `stop` is set first (the poll is cancelled: what it
    fetched stays in the consumer's buffer and is never committed)."""
    if stop.is_set():
        return {}
    polling = asyncio.ensure_future(
        consumer.getmany(timeout_ms=_IDLE_POLL_MS, max_records=settings.consumer_batch_size)
    )
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({polling, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if polling.done():
        batches: dict[TopicPartition, list[Record]] = polling.result()
        return batches
    polling.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await polling
    return {}

"""The relay's consumer loop.

Partitions are independent: each fetched batch is handed to its own task and the partition
is paused until that task is done, so a slow answer holds back only its partition. Within a
partition events go one at a time, in order. Offsets are committed as each event is finished
(delivered, parked in the dead-letter topic or skipped), never before.

A paid order is never dropped: when the platform fails (timeouts, no connection, 5xx, 408, 429,
401/403), the circuit breaker pauses every partition and probes until the platform answers, for
as long as the outage lasts. Only an order the platform refuses itself (another 4xx, after
`max_attempts`) is parked in the dead-letter topic, from where it can be replayed.

Exactly one logical delivery per event: the platform dedupes on the Idempotency-Key (the event
id), and the relay also remembers delivered event ids (relay_deliveries), so a redelivered
event is not even sent again. The only window left — delivered, then killed before the row
is written — is closed by the platform's dedupe.
"""

import asyncio
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any, TypeAlias
from uuid import UUID

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from pydantic import ValidationError

from order.relay.breaker import CircuitBreaker
from order.relay.config import RelaySettings
from order.relay.deliveries import Deliveries, Finished, Outcome
from order.relay.metrics import (
    BACKLOG,
    DEAD_LETTERED,
    DELIVERED,
    DELIVERY_SECONDS,
    RETRIED,
    SKIPPED,
)
from order.relay.platform import DataPlatformClient, DeliveryFailed
from shop_contracts import Envelope, OrderPaid, topics
from shopkit.messaging.deadletter import dead_letter
from shopkit.messaging.kafka import (
    Producer,
    event_type_of,
    make_consumer,
    start_consumer,
    stop_consumer,
)
from shopkit.ops import tracing
from shopkit.ops.logging import bound, get_logger

log = get_logger(__name__)

Record: TypeAlias = ConsumerRecord[Any, Any]
PRUNE_EVERY_S = 3600.0


class _Revocations(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, relay: "DataPlatformRelay") -> None:
        self.relay = relay

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.relay.release(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        return None


class DataPlatformRelay:
    def __init__(
        self,
        settings: RelaySettings,
        deliveries: Deliveries,
        producer: Producer,
        platform: DataPlatformClient,
    ) -> None:
        self.settings = settings
        self.deliveries = deliveries
        self.producer = producer
        self.platform = platform
        self._consumer: AIOKafkaConsumer | None = None
        self._busy: dict[TopicPartition, asyncio.Task[None]] = {}
        self._done: dict[TopicPartition, int] = {}  # next offset to commit, per partition
        self._committed: dict[TopicPartition, int] = {}
        self._last_commit = 0.0
        self.breaker = CircuitBreaker(
            settings.backoff_initial_s,
            settings.backoff_max_s,
            settings.backoff_jitter_s,
            backlog=self.backlog,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; reconnects with backoff when anything below fails."""
        backoff = 1.0
        next_prune = 0.0
        while not stop.is_set():
            consumer = self._consumer = make_consumer(self.settings, self.settings.consumer_group)
            consumer.subscribe(
                [self.settings.topic(topics.ORDER_EVENTS)], listener=_Revocations(self)
            )
            try:
                await start_consumer(consumer)
                log.info("relay_started", platform=self.settings.data_platform_url)
                backoff = 1.0
                while not stop.is_set():
                    await self._dispatch(consumer)
                    await self._settle(consumer)
                    if time.monotonic() >= next_prune:
                        next_prune = time.monotonic() + await self._prune()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("relay_crashed", retry_in_s=backoff)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
                except TimeoutError:
                    pass
                backoff = min(backoff * 2, 30.0)
            finally:
                await self._close(consumer)
        log.info("relay_stopped")

    async def _prune(self) -> float:
        """Forgets old delivery records; seconds until the next time. Housekeeping: a failure
        (the database restarting) is tried again in a minute, the deliveries go on."""
        try:
            await self.deliveries.prune(timedelta(days=self.settings.deliveries_retention_days))
        except Exception:
            log.warning("deliveries_prune_failed", retry_in_s=60, exc_info=True)
            return 60.0
        return PRUNE_EVERY_S

    async def _close(self, consumer: AIOKafkaConsumer) -> None:
        """Finish (briefly), commit and leave the group, within the shutdown timeout."""
        try:
            await self._drain(consumer)  # bounded by half the shutdown timeout
            await stop_consumer(consumer, self.settings.shutdown_timeout_s / 2)
        finally:
            self._consumer = None

    async def _dispatch(self, consumer: AIOKafkaConsumer) -> None:
        batches = await consumer.getmany(
            timeout_ms=200, max_records=self.settings.consumer_batch_size
        )
        for tp, records in batches.items():
            consumer.pause(tp)
            # Where this partition stands until the batch is done (a safe offset to commit).
            self._done.setdefault(tp, records[0].offset)
            self._busy[tp] = asyncio.create_task(self._work(tp, records), name=f"relay-{tp}")

    async def _work(self, tp: TopicPartition, records: list[Record]) -> None:
        """A partition's batch: one read of what was delivered before, the POSTs one at a time
        in order, one write of how each ended, then the offsets may be committed. (Killed
        before that write, the batch is delivered again and the platform dedupes the POSTs.)"""
        delivered = await self.deliveries.delivered_among(
            [event_id for r in records if (event_id := _event_id_of(r)) is not None]
        )
        finished: list[Finished] = []
        for record in records:
            outcome = await self.handle(record, delivered)
            if outcome is not None:
                finished.append(outcome)
                delivered.add(outcome.event_id)
        await self.deliveries.record_all(finished)
        self._done[tp] = records[-1].offset + 1

    def backlog(self) -> int | None:
        """Messages on the assigned partitions not finished yet (None before any is known)."""
        consumer = self._consumer
        if consumer is None:
            return None
        total, known = 0, False
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            finished = self._done.get(tp, self._committed.get(tp))
            if highwater is not None and finished is not None:
                total += max(highwater - finished, 0)
                known = True
        return total if known else None

    async def _settle(self, consumer: AIOKafkaConsumer) -> None:
        """Resume the partitions whose batch is done and commit what was finished: at once when
        nothing is in progress, else at most once per consumer_commit_interval_s (each commit is
        a request the broker writes; a commit per delivery cost the broker 1 ms of CPU per order).
        A crash loses at most that interval's commits: those orders are found delivered."""
        for tp, task in list(self._busy.items()):
            if task.done():
                del self._busy[tp]
                task.result()  # a database or Kafka failure restarts the consumer
                if tp in consumer.assignment():
                    consumer.resume(tp)
        now = asyncio.get_running_loop().time()
        if not self._busy or now - self._last_commit >= self.settings.consumer_commit_interval_s:
            await self._commit(consumer, self._done.keys())
            self._last_commit = now
        if (backlog := self.backlog()) is not None:
            BACKLOG.set(backlog)

    async def _commit(self, consumer: AIOKafkaConsumer, tps: Iterable[TopicPartition]) -> None:
        offsets = {
            tp: self._done[tp]
            for tp in tps
            if tp in self._done and self._committed.get(tp) != self._done[tp]
        }
        if offsets:
            await consumer.commit(offsets)
            self._committed.update(offsets)

    async def release(self, tps: set[TopicPartition]) -> None:
        """Partitions going to another consumer: stop their work, commit what was finished."""
        await self._cancel([t for tp, t in self._busy.items() if tp in tps])
        for tp in tps:
            self._busy.pop(tp, None)
        if self._consumer is not None:
            try:
                await self._commit(self._consumer, tps)
            except Exception:
                log.warning("relay_commit_on_revoke_failed", exc_info=True)
        for tp in tps:
            self._done.pop(tp, None)
            self._committed.pop(tp, None)

    async def _drain(self, consumer: AIOKafkaConsumer) -> None:
        """Shutdown or restart: let batches in hand finish for a while (not at all while the
        platform is down: they would only wait), commit, forget. Within half the shutdown
        timeout, so that the consumer still leaves its group cleanly."""
        if self._busy:
            pending = set(self._busy.values())
            if not self.breaker.is_open:
                _, pending = await asyncio.wait(
                    pending, timeout=self.settings.shutdown_timeout_s / 2
                )
            await self._cancel(list(pending))
        try:
            await self._commit(consumer, list(self._done))
        except Exception:
            log.warning("relay_final_commit_failed", exc_info=True)
        self._busy.clear()
        self._done.clear()
        self._committed.clear()

    @staticmethod
    async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def handle(self, record: Record, delivered: set[UUID]) -> "Finished | None":
        """One event: deliver an OrderPaid once (not if in `delivered`), waiting out any outage;
        park it in the dead-letter topic only if the platform refuses it; how it ended, for the
        caller to record (None: nothing to record)."""
        if event_type_of(record.headers) not in (None, OrderPaid.__name__):
            return None  # the saga's other events share the topic (told by the header, unread)
        try:
            envelope = Envelope.model_validate_json(record.value)
        except ValidationError as exc:
            await self._dead_letter(record, f"unparseable envelope: {exc}", attempts=0)
            return None
        if envelope.event_type != OrderPaid.__name__:
            return None  # the saga's other events share the topic
        with bound(order_id=str(envelope.order_id), event_id=str(envelope.event_id)):
            try:
                paid = OrderPaid.model_validate(envelope.payload)
            except ValidationError as exc:
                await self._dead_letter(record, f"invalid OrderPaid: {exc}", attempts=0)
                return None
            if envelope.event_id in delivered:
                SKIPPED.inc()
                log.info("already_delivered")
                return None
            body = orjson.dumps(paid.model_dump(mode="json"))
            started = time.monotonic()
            # The POST carries the trace on (traceparent); the log lines carry its trace_id.
            with self._span(record):
                try:
                    attempts = await self._deliver(envelope, body)
                except Refused as refused:
                    why = str(refused.error)
                    log.error("data_platform_refused_order", attempts=refused.attempts, error=why)
                    await self._dead_letter(record, why, refused.attempts)
                    return Finished(
                        envelope.event_id,
                        paid.order_id,
                        Outcome.DEAD_LETTERED,
                        refused.attempts,
                        why,
                    )
                DELIVERED.inc()
                DELIVERY_SECONDS.observe(time.monotonic() - started)
                log.info("delivered_to_data_platform", attempts=attempts)
            return Finished(envelope.event_id, paid.order_id, Outcome.DELIVERED, attempts)

    @staticmethod
    def _span(record: Record) -> AbstractContextManager[Any]:
        return tracing.consumer_span("OrderPaid deliver", record.headers, record.topic)

    async def _deliver(self, envelope: Envelope, body: bytes) -> int:
        """POST until a 2xx; the number of attempts it took. Waits out every failure of the
        platform (with the other partitions, through the breaker); raises Refused when the
        platform refused this order `max_attempts` times."""
        attempt = refusals = 0
        while True:
            attempt += 1
            async with self.breaker.attempt():
                try:
                    await self.platform.post_order(envelope.event_id, body)
                except DeliveryFailed as exc:
                    failure = exc
                else:
                    self.breaker.answered()
                    return attempt
            RETRIED.inc()
            if failure.permanent:
                self.breaker.answered()  # it answered: the platform is up, this order is refused
                refusals += 1
                if refusals >= self.settings.max_attempts:
                    raise Refused(attempt, failure)
                delay = min(
                    self.settings.backoff_initial_s * 2 ** (refusals - 1),
                    self.settings.backoff_max_s,
                )
                log.warning("delivery_refused_will_retry", attempt=attempt, error=str(failure))
                await asyncio.sleep(delay)
            else:
                delay = self.breaker.failed(str(failure))
                log.warning(
                    "delivery_failed_will_retry",
                    attempt=attempt,
                    error=str(failure),
                    retry_in_s=round(delay, 3),
                )

    async def _dead_letter(self, record: Record, error: str, attempts: int) -> None:
        await dead_letter(
            self.producer,
            self.settings,
            record,
            consumer=self.settings.consumer_group,
            error=error,
            attempts=attempts,
        )
        DEAD_LETTERED.inc()


class Refused(Exception):
    """The platform refused one order (not an outage): park it."""

    def __init__(self, attempts: int, error: DeliveryFailed) -> None:
        super().__init__(str(error))
        self.attempts = attempts
        self.error = error


def _event_id_of(record: Record) -> UUID | None:
    """The event id of an OrderPaid (or of a message without header), read cheaply."""
    if event_type_of(record.headers) not in (None, OrderPaid.__name__):
        return None
    try:
        return UUID(orjson.loads(record.value)["event_id"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None  # handle() dead-letters it

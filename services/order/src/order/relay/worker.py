"""The relay: shopkit's consumer engine (shopkit.messaging.engine) with the relay's work (POST
each OrderPaid to the data platform) and delivery policy (a partition's batch at a time, the
others going on: shopkit.messaging.dispatch.PerPartition; the circuit breaker around every POST).

Partitions are independent: each fetched batch is worked in its own task and the partition is
paused until it is done, so a slow answer holds back only its partition. Within a partition
events go one at a time, in order. Offsets are committed once a batch is finished (delivered,
parked in the dead-letter topic or skipped), never before.

A paid order is never dropped: when the platform fails (timeouts, no connection, 5xx, 408, 429,
401/403: transient, `DeliveryFailed.retriable`), the circuit breaker holds every partition's
POSTs and probes until the platform answers, for as long as the outage lasts. Only an order the
platform refuses itself (another 4xx, after `max_attempts`) is parked in the dead-letter topic,
from where it can be replayed. Both are decided by shopkit.messaging.retry with the relay's rule.

Exactly one logical delivery per event: the platform dedupes on the Idempotency-Key (the event
id), and the relay also remembers delivered event ids (relay_deliveries), so a redelivered
event is not even sent again. The only window left — delivered, then killed before the row
is written — is closed by the platform's dedupe. (relay_deliveries, not processed_events: the
effect is an HTTP call, which no database transaction can hold, least of all through an outage.)
"""

import asyncio
import contextlib
import time
from collections.abc import Sequence
from datetime import timedelta
from uuid import UUID

import orjson

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
from shopkit.messaging import reading, retry
from shopkit.messaging.deadletter import dead_letter
from shopkit.messaging.dispatch import PerPartition
from shopkit.messaging.engine import ConsumerEngine, Record
from shopkit.messaging.kafka import Producer
from shopkit.ops.logging import bound, get_logger

log = get_logger(__name__)

PRUNE_EVERY_S = 3600.0
PAID = frozenset({OrderPaid.__name__})


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
        self.breaker = CircuitBreaker(
            settings.backoff_initial_s,
            settings.backoff_max_s,
            settings.backoff_jitter_s,
            backlog=self.backlog,
        )
        self.rule = retry.RetryRule(
            attempts=settings.max_attempts,
            backoff_s=settings.backoff_initial_s,
            backoff_max_s=settings.backoff_max_s,
            transient_backoff_s=0.0,  # the breaker paces the attempts during an outage
            transient_backoff_max_s=0.0,
            patience_s=None,  # and they go on for as long as it lasts
        )
        self.engine = ConsumerEngine(
            settings,
            group_id=settings.consumer_group,
            topics=[topics.ORDER_EVENTS],
            work=self.work,
            # Batches in hand when stopping finish for a while, not at all while the platform is
            # down (they would only wait).
            dispatch=PerPartition(drain_while=lambda: not self.breaker.is_open),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set (the engine reconnects with backoff when anything below
        fails); forgets old delivery records meanwhile."""
        pruning = asyncio.create_task(self._prune_every(stop), name="relay-deliveries-prune")
        try:
            await self.engine.run(stop)
        finally:
            pruning.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pruning

    async def _prune_every(self, stop: asyncio.Event) -> None:
        """Housekeeping: a failure (the database restarting) is tried again in a minute, the
        deliveries go on."""
        while not stop.is_set():
            try:
                await self.deliveries.prune(timedelta(days=self.settings.deliveries_retention_days))
                delay = PRUNE_EVERY_S
            except Exception:
                log.warning("deliveries_prune_failed", retry_in_s=60, exc_info=True)
                delay = 60.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)

    def backlog(self) -> int | None:
        """Messages on the assigned partitions not finished yet (None before any is known)."""
        return self.engine.backlog()

    def _observe_backlog(self) -> None:
        if (backlog := self.backlog()) is not None:
            BACKLOG.set(backlog)

    async def work(self, records: Sequence[Record]) -> None:
        """A partition's batch: one read of what was delivered before, the POSTs one at a time
        in order, one write of how each ended; then the engine may commit the offsets. (Killed
        before that write, the batch is delivered again and the platform dedupes the POSTs.)"""
        self._observe_backlog()
        delivered = await self.deliveries.delivered_among(
            [
                event_id
                for r in records
                if (event_id := _event_id_of(r, self.settings.consumer_group)) is not None
            ]
        )
        finished: list[Finished] = []
        for record in records:
            outcome = await self.handle(record, delivered)
            if outcome is not None:
                finished.append(outcome)
                delivered.add(outcome.event_id)
        await self.deliveries.record_all(finished)
        self._observe_backlog()

    async def handle(self, record: Record, delivered: set[UUID]) -> Finished | None:
        """One event: deliver an OrderPaid once (not if in `delivered`), waiting out any outage;
        park it in the dead-letter topic only if the platform refuses it; how it ended, for the
        caller to record (None: nothing to record)."""
        if not reading.wanted(record.headers, PAID, self.settings.consumer_group):
            return None  # another consumer's event or replay (told by the headers, unread)

        async def unreadable(error: str) -> None:
            await self._dead_letter(record, error, attempts=0)

        read = await reading.read(record.value, PAID, unreadable)
        if read is None:
            return None
        envelope, paid = read.envelope, read.event
        if not isinstance(paid, OrderPaid):
            return None  # not reached: read() returns OrderPaid events only
        with bound(order_id=str(envelope.order_id), event_id=str(envelope.event_id)):
            if envelope.event_id in delivered:
                SKIPPED.inc()
                log.info("already_delivered")
                return None
            body = orjson.dumps(paid.model_dump(mode="json"))
            started = time.monotonic()
            # The POST carries the trace on (traceparent); the log lines carry its trace_id.
            with reading.span(
                "deliver", envelope, record.headers, record.topic, self.settings.consumer_group
            ):
                try:
                    _, attempts = await retry.settle(lambda: self._post(envelope, body), self.rule)
                except retry.GaveUp as refused:
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

    async def _post(self, envelope: Envelope, body: bytes) -> None:
        """One attempt, through the breaker: while it is open, attempts wait their turn (every
        partition's). A failure is raised for shopkit.messaging.retry to classify."""
        async with self.breaker.attempt() as attempt:
            try:
                await self.platform.post_order(envelope.event_id, body)
            except DeliveryFailed as exc:
                failure = exc
            else:
                self.breaker.answered(attempt)
                return
        RETRIED.inc()
        if failure.permanent:
            self.breaker.answered(attempt)  # it answered: the platform is up, this order is refused
        else:
            delay = self.breaker.failed(attempt, str(failure))
            log.warning(
                "delivery_failed_will_retry", error=str(failure), retry_in_s=round(delay, 3)
            )
        raise failure

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


def _event_id_of(record: Record, consumer: str) -> UUID | None:
    """The event id of an OrderPaid (or of a message without header), read cheaply."""
    if not reading.wanted(record.headers, PAID, consumer):
        return None
    try:
        return UUID(orjson.loads(record.value)["event_id"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None  # handle() dead-letters it

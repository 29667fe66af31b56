"""Idempotent Kafka consumer.

For each message: parse the envelope, find the handler for its event type, and run the handler
in one DB transaction together with the insert of `(consumer, event_id)` into processed_events.
A redelivered event finds its row and changes nothing. Offsets are committed only after the DB
commit. A handler that keeps failing is retried `consumer_max_retries` times with backoff, then
the message goes to the dead-letter topic (with the error in its headers) and the partition
moves on. Partitions are processed concurrently; messages within one partition in order.
"""

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from pydantic import ValidationError
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shop_contracts import Envelope, Event, UnknownEventType, topics
from shopkit.db import ProcessedEvent
from shopkit.kafka import make_consumer
from shopkit.logging import bound, get_logger
from shopkit.metrics import CONSUMER_LAG, DEAD_LETTERED, EVENTS_CONSUMED
from shopkit.settings import ServiceSettings

log = get_logger(__name__)

Handler = Callable[[AsyncSession, Any, Envelope], Awaitable[None]]
"""A saga step: `handler(session, event, envelope)`, run inside the consumer's transaction."""


def is_transient(exc: BaseException) -> bool:
    """Failures of the infrastructure rather than of the event: retried until they pass."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError | InterfaceError | PoolTimeout | OSError | TimeoutError)


class EventConsumer:
    def __init__(
        self,
        settings: ServiceSettings,
        sessions: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
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
            consumer = make_consumer(self.settings, self.group_id, *self.topics)
            try:
                await consumer.start()
                log.info("consumer_started", consumer=self.group_id, topics=self.topics)
                backoff = 1.0
                while not stop.is_set():
                    batches = await consumer.getmany(
                        timeout_ms=200, max_records=self.settings.consumer_batch_size
                    )
                    if not batches:
                        continue
                    await asyncio.gather(*(self._process_partition(m) for m in batches.values()))
                    await consumer.commit({tp: msgs[-1].offset + 1 for tp, msgs in batches.items()})
                    self._observe_lag(consumer, batches)
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
                await consumer.stop()
        log.info("consumer_stopped", consumer=self.group_id)

    def _observe_lag(
        self,
        consumer: AIOKafkaConsumer,
        batches: dict[TopicPartition, list[ConsumerRecord[Any, Any]]],
    ) -> None:
        for tp, msgs in batches.items():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                CONSUMER_LAG.labels(self.group_id, tp.topic, tp.partition).set(
                    max(highwater - msgs[-1].offset - 1, 0)
                )

    async def _process_partition(self, messages: list[ConsumerRecord[Any, Any]]) -> None:
        for message in messages:
            await self.process(message)

    async def process(self, message: ConsumerRecord[Any, Any]) -> None:
        try:
            envelope = Envelope.model_validate_json(message.value)
        except ValidationError as exc:
            await self._dead_letter(message, f"unparseable envelope: {exc}")
            return
        handler = self.handlers.get(envelope.event_type)
        if handler is None:
            return  # another consumer's event on a shared topic
        with bound(
            order_id=str(envelope.order_id),
            event_id=str(envelope.event_id),
            event_type=envelope.event_type,
            consumer=self.group_id,
        ):
            try:
                event = envelope.event()
            except (ValidationError, UnknownEventType) as exc:
                await self._dead_letter(message, f"invalid payload: {exc}")
                return
            await self._handle_with_retries(message, handler, event, envelope)

    async def _handle_with_retries(
        self, message: ConsumerRecord[Any, Any], handler: Handler, event: Event, envelope: Envelope
    ) -> None:
        attempts = self.settings.consumer_max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                outcome = await self._handle_once(handler, event, envelope)
                EVENTS_CONSUMED.labels(self.group_id, envelope.event_type, outcome).inc()
                return
            except Exception as exc:
                if attempt == attempts and is_transient(exc):
                    # the database (or the network) is down, not the message: restart from the
                    # committed offset later instead of dead-lettering a good event
                    log.warning("handler_waiting_for_infrastructure", error=repr(exc))
                    raise
                if attempt == attempts:
                    log.exception("handler_gave_up", attempts=attempts)
                    await self._dead_letter(message, f"{type(exc).__name__}: {exc}")
                    return
                log.warning("handler_failed", attempt=attempt, error=repr(exc))
                await asyncio.sleep(self.settings.consumer_retry_backoff_s * 2 ** (attempt - 1))

    async def _handle_once(self, handler: Handler, event: Event, envelope: Envelope) -> str:
        async with self.sessions() as session, session.begin():
            first_time = await session.scalar(
                insert(ProcessedEvent)
                .values(consumer=self.group_id, event_id=envelope.event_id)
                .on_conflict_do_nothing()
                .returning(ProcessedEvent.event_id)
            )
            if first_time is None:
                return "duplicate"
            await handler(session, event, envelope)
        return "handled"

    async def _dead_letter(self, message: ConsumerRecord[Any, Any], error: str) -> None:
        DEAD_LETTERED.labels(self.group_id).inc()
        await self.producer.send_and_wait(
            self.settings.topic(topics.DEAD_LETTER),
            value=message.value,
            key=message.key,
            headers=[
                ("dlq.consumer", self.group_id.encode()),
                ("dlq.error", error[:2000].encode()),
                ("dlq.topic", message.topic.encode()),
                ("dlq.partition", str(message.partition).encode()),
                ("dlq.offset", str(message.offset).encode()),
            ],
        )
        log.error("dead_lettered", topic=message.topic, offset=message.offset, error=error[:500])

"""Kafka plumbing shared by every service: an idempotent producer and topic creation."""

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    InvalidProducerEpoch,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)
from prometheus_client import Counter

from shopkit.ops.logging import get_logger
from shopkit.settings import ServiceSettings

log = get_logger(__name__)

PRODUCER_STATE_LOST = (
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    InvalidProducerEpoch,
    ProducerFenced,
)
"""The broker no longer knows the producer's idempotence state (it restarted and lost the last
sequence numbers): aiokafka's sender stops for good, every later send fails the same way."""

PRODUCER_RENEWED = Counter(
    "kafka_producer_renewed_total",
    "Kafka producers replaced after the broker lost their idempotence state",
)


@dataclass(frozen=True)
class Message:
    topic: str
    value: bytes
    key: bytes | None = None
    headers: Sequence[tuple[str, bytes]] = ()


class Producer:
    """The process's Kafka producer: idempotent, acks=all (a retried send never duplicates or
    reorders within a partition), replaced by a new one (a new producer id) when the broker lost
    its state. The send that met the loss raises; sending again (the outbox's next round, the
    consumer's retry) goes through the new producer: at least once, as the outbox always is."""

    def __init__(self, factory: Callable[[], AIOKafkaProducer]) -> None:
        self._factory = factory
        self._inner = factory()
        self._renewing = asyncio.Lock()

    async def start(self) -> None:
        await self._inner.start()

    async def stop(self) -> None:
        await self._inner.stop()

    async def send_all(self, messages: Iterable[Message]) -> None:
        """Sends every message and waits until the broker has them all."""
        inner = self._inner
        try:
            pending = [
                await inner.send(m.topic, value=m.value, key=m.key, headers=list(m.headers))
                for m in messages
            ]
            await asyncio.gather(*pending)
        except PRODUCER_STATE_LOST as exc:
            await self._renew(inner, exc)
            raise

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> Any:
        inner = self._inner
        try:
            return await inner.send_and_wait(
                topic, value=value, key=key, headers=list(headers or ())
            )
        except PRODUCER_STATE_LOST as exc:
            await self._renew(inner, exc)
            raise

    async def _renew(self, failed: AIOKafkaProducer, cause: Exception) -> None:
        async with self._renewing:
            if self._inner is not failed:
                return  # another send renewed it already
            fresh = self._factory()
            await fresh.start()
            self._inner = fresh
        PRODUCER_RENEWED.inc()
        log.warning("kafka_producer_renewed", error=repr(cause))
        with suppress(Exception):
            await failed.stop()


CONSUMER_START_TIMEOUT_S = 120.0
"""How long joining the group may take before a consumer is given up for a fresh one."""


async def start_consumer(consumer: AIOKafkaConsumer) -> None:
    """`consumer.start()`, bounded: aiokafka waits for the group's assignment without end, and a
    group that never assigns (its coordinator still loading after a broker restart) must mean
    a fresh consumer (the caller's restart loop), not a process that waits forever."""
    async with asyncio.timeout(CONSUMER_START_TIMEOUT_S):
        await consumer.start()


async def stop_consumer(consumer: AIOKafkaConsumer, timeout_s: float) -> None:
    """`consumer.stop()` (commit, leave the group), given up after `timeout_s`: a close that hangs
    on a coordinator gone with its broker must not keep the caller from its next consumer."""
    try:
        async with asyncio.timeout(timeout_s):
            await consumer.stop()
    except TimeoutError:
        log.warning("kafka_consumer_close_timed_out", timeout_s=timeout_s)


def make_producer(settings: ServiceSettings) -> Producer:
    return Producer(
        lambda: AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            client_id=settings.service_name,
            enable_idempotence=True,
            acks="all",
            linger_ms=settings.kafka_linger_ms,
            request_timeout_ms=15_000,
        )
    )


EVENT_TYPE_HEADER = "event_type"
"""Set by every outbox relay: lets a consumer skip another consumer's events unread."""


def event_type_of(
    headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None,
) -> str | None:
    """The `event_type` header of a message, or None when it has none."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    for name, value in pairs:
        if name == EVENT_TYPE_HEADER:
            return value.decode(errors="replace")
    return None


def make_consumer(settings: ServiceSettings, group_id: str, *topics: str) -> AIOKafkaConsumer:
    """A group member that commits by hand (after the DB commit) and reads only committed
    messages; the group id carries the topic prefix so environments never share offsets."""
    return AIOKafkaConsumer(
        *(settings.topic(t) for t in topics),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"{settings.kafka_topic_prefix}{group_id}",
        client_id=f"{settings.service_name}-{group_id}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_interval_ms=300_000,
        session_timeout_ms=30_000,
        heartbeat_interval_ms=3_000,
        fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
        fetch_min_bytes=settings.consumer_fetch_min_bytes,
    )


async def ensure_topics(
    settings: ServiceSettings, names: list[str], *, exact: Sequence[NewTopic] = ()
) -> None:
    """Create the topics that do not exist yet (idempotent; safe with N replicas): `names`
    (prefixed, with the configured partitions, replication and retention: the claims' retention
    is checked against it) and `exact` (as given)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        retention_ms = settings.kafka_topic_retention_days * 86_400_000
        wanted = [
            NewTopic(
                settings.topic(n),
                settings.kafka_topic_partitions,
                settings.kafka_replication_factor,
                topic_configs={"retention.ms": str(retention_ms)},
            )
            for n in names
        ] + list(exact)
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            await admin.create_topics(missing)
            log.info("topics_created", topics=[t.name for t in missing])
    finally:
        await admin.close()

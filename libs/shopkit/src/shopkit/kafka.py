"""Kafka plumbing shared by every service: an idempotent producer and topic creation."""

from collections.abc import Iterable, Mapping

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shopkit.logging import get_logger
from shopkit.settings import ServiceSettings

log = get_logger(__name__)


def make_producer(settings: ServiceSettings) -> AIOKafkaProducer:
    """Idempotent, acks=all: a retried send never duplicates or reorders within a partition."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=settings.service_name,
        enable_idempotence=True,
        acks="all",
        linger_ms=settings.kafka_linger_ms,
        request_timeout_ms=15_000,
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


async def ensure_topics(settings: ServiceSettings, names: list[str]) -> None:
    """Create the topics that do not exist yet (idempotent; safe with N replicas)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [settings.topic(n) for n in names if settings.topic(n) not in existing]
        if missing:
            await admin.create_topics(
                [
                    NewTopic(t, settings.kafka_topic_partitions, settings.kafka_replication_factor)
                    for t in missing
                ]
            )
            log.info("topics_created", topics=missing)
    finally:
        await admin.close()

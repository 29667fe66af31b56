"""The dead-letter topic, written one way by every consumer (the saga consumers, the
data-platform relay, the ranking worker): the message as it came, and headers saying who gave
up on it, why, and where it came from, so that it can be found and replayed."""

from typing import Any

from aiokafka import AIOKafkaProducer

from shop_contracts import topics
from shopkit.logging import get_logger
from shopkit.settings import ServiceSettings

log = get_logger(__name__)

MAX_ERROR_CHARS = 2_000


def dead_letter_headers(
    *,
    consumer: str,
    error: str,
    topic: str,
    partition: int,
    offset: int,
    attempts: int | None = None,
) -> list[tuple[str, bytes]]:
    headers = [
        ("dlq.consumer", consumer.encode()),
        ("dlq.error", error[:MAX_ERROR_CHARS].encode()),
        ("dlq.topic", topic.encode()),
        ("dlq.partition", str(partition).encode()),
        ("dlq.offset", str(offset).encode()),
    ]
    if attempts is not None:
        headers.append(("dlq.attempts", str(attempts).encode()))
    return headers


async def dead_letter(
    producer: AIOKafkaProducer,
    settings: ServiceSettings,
    record: Any,
    *,
    consumer: str,
    error: str,
    attempts: int | None = None,
) -> None:
    """Sends `record` (an aiokafka ConsumerRecord) to the dead-letter topic and logs it."""
    await producer.send_and_wait(
        settings.topic(topics.DEAD_LETTER),
        value=record.value,
        key=record.key,
        headers=dead_letter_headers(
            consumer=consumer,
            error=error,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            attempts=attempts,
        ),
    )
    log.error(
        "dead_lettered",
        consumer=consumer,
        topic=record.topic,
        offset=record.offset,
        attempts=attempts,
        error=error[:500],
    )

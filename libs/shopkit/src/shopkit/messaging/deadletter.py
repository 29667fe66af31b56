"""The dead-letter topic, written one way by every consumer (the saga consumers, the
data-platform relay, the ranking worker): the message as it came (key, value and its own
headers), and `dlq.*` headers saying who gave up on it, why, and where it came from, so that it
can be found and replayed (`python -m shopkit.ops.deadletters`, `make deadletters`)."""

from typing import Any

from shop_contracts import topics
from shopkit.messaging.kafka import Producer
from shopkit.ops.logging import get_logger
from shopkit.settings import ServiceSettings

log = get_logger(__name__)

MAX_ERROR_CHARS = 2_000
PREFIX = "dlq."
REPLAYED_FROM = f"{PREFIX}replayed-from"
"""On a replayed message: the ID of the dead letter it came back from (shopkit.ops.deadletters)."""
REPLAYED_FOR = f"{PREFIX}replayed-for"
"""On a replayed message: the consumer that gave up on it. The topic's other consumers skip it:
each of them handled that message itself, or dead-lettered it in a letter of its own."""


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


def original_headers(headers: Any) -> list[tuple[str, bytes]]:
    """A message's own headers (event type, trace context, …), without any `dlq.*` ones."""
    return [(k, bytes(v)) for k, v in (headers or ()) if not k.startswith(PREFIX)]


def letter(
    message: Any, *, consumer: str, error: str, attempts: int | None = None
) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """The dead letter of `message` (an aiokafka ConsumerRecord or a Faust message: anything
    with value, key, headers, topic, partition and offset): its key, its value as it came, and
    its own headers followed by the `dlq.*` ones."""
    headers = original_headers(message.headers) + dead_letter_headers(
        consumer=consumer,
        error=error,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        attempts=attempts,
    )
    return message.key, message.value, headers


def logged(message: Any, *, consumer: str, error: str, attempts: int | None = None) -> None:
    log.error(
        "dead_lettered",
        consumer=consumer,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        attempts=attempts,
        error=error[:500],
    )


async def dead_letter(
    producer: Producer,
    settings: ServiceSettings,
    record: Any,
    *,
    consumer: str,
    error: str,
    attempts: int | None = None,
) -> None:
    """Sends `record` (an aiokafka ConsumerRecord) to the dead-letter topic and logs it."""
    key, value, headers = letter(record, consumer=consumer, error=error, attempts=attempts)
    await producer.send_and_wait(
        settings.topic(topics.DEAD_LETTER), value=value, key=key, headers=headers
    )
    logged(record, consumer=consumer, error=error, attempts=attempts)

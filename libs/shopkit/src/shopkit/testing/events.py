"""Kafka as the services see it: publish events as a service would, and read topics back from
the beginning to see what a service published."""

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shop_contracts import Envelope, Event
from shopkit.testing.throwaway import KAFKA


async def publish(topic: str, event: Event, *, producer_name: str = "test") -> Envelope:
    """Publish one event as a service would (envelope JSON, key = order id)."""
    envelope = Envelope.wrap(event, producer=producer_name)
    await publish_envelope(topic, envelope)
    return envelope


async def publish_envelope(topic: str, *envelopes: Envelope) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, enable_idempotence=True)
    await producer.start()
    try:
        for envelope in envelopes:
            await producer.send(
                topic, value=orjson.dumps(envelope.model_dump(mode="json")), key=envelope.key
            )
        await producer.flush()
    finally:
        await producer.stop()


@asynccontextmanager
async def topic_reader(*topics: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer without group reading the topics from the beginning."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=KAFKA,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def collect(
    consumer: AIOKafkaConsumer,
    until: Callable[[list[Any]], bool],
    *,
    timeout_s: float = 30.0,
) -> list[Any]:
    """Read records until `until(records)` holds; raises TimeoutError with what was seen."""
    seen: list[Any] = []

    async def loop() -> None:
        while not until(seen):
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                seen.extend(records)

    try:
        await asyncio.wait_for(loop(), timeout_s)
    except TimeoutError as exc:
        raise TimeoutError(f"only {len(seen)} records before the deadline") from exc
    return seen

"""An EventConsumer of the test's own handlers, running for the length of a block: the
consumer engine without a service around it."""

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shop_contracts import Event
from shop_contracts import topics as all_topics
from shopkit.messaging.consumer import EventConsumer, Handler
from shopkit.messaging.kafka import Producer, ensure_topics, make_producer
from shopkit.settings import ServiceSettings


@asynccontextmanager
async def running_consumer(
    settings: ServiceSettings,
    sessions: async_sessionmaker[AsyncSession],
    handlers: Mapping[type[Event], Handler],
    *,
    group_id: str,
    topics: Sequence[str],
) -> AsyncIterator[Producer]:
    """An EventConsumer of `handlers` running (topics created) until the block ends; yields its
    producer, for the test to publish with."""
    await ensure_topics(settings, list(all_topics.ALL_TOPICS))
    producer = make_producer(settings)
    await producer.start()
    stop = asyncio.Event()
    consumer = EventConsumer(
        settings, sessions, producer, group_id=group_id, topics=list(topics), handlers=handlers
    )
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield producer
    finally:
        stop.set()
        await task
        await producer.stop()

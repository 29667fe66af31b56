"""The relay process: the data-platform relay as a component of shopkit's Runtime, plus
/healthz, /readyz and /metrics on its own port. It runs no outbox relay and no saga consumers
(run_workers=false): the order service's outbox is relayed by the order service."""

import asyncio

from fastapi import FastAPI

from order.relay.config import RelaySettings
from order.relay.deliveries import Deliveries, ensure_schema
from order.relay.platform import DataPlatformClient
from order.relay.worker import DataPlatformRelay
from shop_contracts import topics
from shopkit.http.app import create_app as create_service_app
from shopkit.messaging.kafka import ensure_topics, make_producer
from shopkit.ops.runtime import Runtime, Worker


def data_platform_relay(settings: RelaySettings) -> Worker:
    async def dataplatform(runtime: Runtime, stop: asyncio.Event) -> None:
        await ensure_schema(runtime.engine)
        await ensure_topics(settings, [topics.ORDER_EVENTS, topics.DEAD_LETTER])
        producer = make_producer(settings)
        await producer.start()
        platform = DataPlatformClient(
            settings.data_platform_url,
            settings.data_platform_secret,
            settings.request_timeout_s,
        )
        try:
            relay = DataPlatformRelay(settings, Deliveries(runtime.sessions), producer, platform)
            await relay.run(stop)
        finally:
            await producer.stop()
            await platform.aclose()

    return dataplatform


def create_app(settings: RelaySettings | None = None) -> FastAPI:
    settings = settings or RelaySettings()
    runtime = Runtime(settings, components=[data_platform_relay(settings)], publishes=False)
    return create_service_app(runtime, title="Order data-platform relay", routers=[])

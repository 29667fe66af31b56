"""The relay process: the consumer loop plus /healthz, /readyz and /metrics on its own port."""

import asyncio
from dataclasses import dataclass, field

import httpx
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from order.relay.config import RelaySettings
from order.relay.deliveries import Deliveries, ensure_schema
from order.relay.platform import DataPlatformClient
from order.relay.worker import DataPlatformRelay
from shop_contracts import topics
from shopkit.api import create_app as create_service_app
from shopkit.api import serve
from shopkit.kafka import ensure_topics, make_producer
from shopkit.runtime import Runtime


@dataclass
class RelayRuntime(Runtime):
    """shopkit's Runtime (engine, readiness, graceful stop) running the relay as its only
    worker: `Runtime.start()` with run_workers would also start an outbox relay, and the
    outbox belongs to the order service, so the relay is started here instead."""

    transport: httpx.AsyncBaseTransport | None = None
    _relay_stop: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _relay_task: asyncio.Task[None] | None = field(init=False, default=None)
    _relay_producer: AIOKafkaProducer | None = field(init=False, default=None)
    _platform: DataPlatformClient | None = field(init=False, default=None)

    async def start(self) -> None:
        await super().start()
        settings = self.relay_settings
        await ensure_schema(self.engine)
        await ensure_topics(settings, [topics.ORDER_EVENTS, topics.DEAD_LETTER])
        self._relay_producer = make_producer(settings)
        await self._relay_producer.start()
        self._platform = DataPlatformClient(
            settings.data_platform_url,
            settings.data_platform_secret,
            settings.request_timeout_s,
            transport=self.transport,
        )
        relay = DataPlatformRelay(
            settings, Deliveries(self.sessions), self._relay_producer, self._platform
        )
        self._relay_task = asyncio.create_task(relay.run(self._relay_stop), name="dataplatform")
        self.readiness_checks.append(self._relay_alive)

    async def stop(self) -> None:
        self._relay_stop.set()
        if self._relay_task is not None:
            try:
                await asyncio.wait_for(self._relay_task, self.settings.shutdown_timeout_s * 2)
            except TimeoutError:
                pass
        if self._relay_producer is not None:
            await self._relay_producer.stop()
        if self._platform is not None:
            await self._platform.aclose()
        await super().stop()

    @property
    def relay_settings(self) -> RelaySettings:
        assert isinstance(self.settings, RelaySettings)
        return self.settings

    async def _relay_alive(self) -> None:
        if self._relay_task is None or self._relay_task.done():
            raise RuntimeError("the relay is not running")


def create_app(
    settings: RelaySettings | None = None, *, transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    runtime = RelayRuntime(settings or RelaySettings(), transport=transport)
    return create_service_app(runtime, title="Order data-platform relay", routers=[])


def main() -> None:
    settings = RelaySettings()
    serve(create_app(settings), settings.http_host, settings.http_port)

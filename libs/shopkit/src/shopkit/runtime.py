"""A service's process: DB engine, Kafka producer, the outbox relay, its consumers and any other
background workers, started and stopped together (graceful shutdown: stop taking new messages,
finish the batch in hand, commit, close)."""

import asyncio
import signal
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shop_contracts import Event, topics
from shopkit.consumer import EventConsumer, Handler
from shopkit.db import create_engine, ping, session_factory
from shopkit.kafka import ensure_topics, make_producer
from shopkit.logging import configure_logging, get_logger
from shopkit.migrations import upgrade
from shopkit.outbox import OutboxRelay
from shopkit.settings import ServiceSettings

log = get_logger(__name__)

Worker = Callable[["Runtime", asyncio.Event], Awaitable[None]]
Check = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class ConsumerSpec:
    group_id: str
    topics: list[str]
    handlers: Mapping[type[Event], Handler]


@dataclass
class Runtime:
    settings: ServiceSettings
    migrations: Path | None = None
    consumers: list[ConsumerSpec] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)
    readiness_checks: list[Check] = field(default_factory=list)
    engine: AsyncEngine = field(init=False)
    sessions: async_sessionmaker[AsyncSession] = field(init=False)
    producer: AIOKafkaProducer = field(init=False)
    _stop: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(init=False, default_factory=list)
    _producer_started: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        configure_logging(
            self.settings.service_name, self.settings.log_level, self.settings.log_json
        )
        self.engine = create_engine(self.settings)
        self.sessions = session_factory(self.engine)

    async def start(self) -> None:
        if self.migrations is not None and self.settings.run_migrations:
            await upgrade(self.migrations, self.settings.database_url)
        if not self.settings.run_workers:
            return
        await ensure_topics(self.settings, list(topics.ALL_TOPICS))
        self.producer = make_producer(self.settings)
        await self.producer.start()
        self._producer_started = True
        self._spawn(
            "outbox-relay", OutboxRelay(self.settings, self.sessions, self.producer).run(self._stop)
        )
        for spec in self.consumers:
            consumer = EventConsumer(
                self.settings,
                self.sessions,
                self.producer,
                group_id=spec.group_id,
                topics=spec.topics,
                handlers=spec.handlers,
            )
            self._spawn(f"consumer-{spec.group_id}", consumer.run(self._stop))
        for worker in self.workers:
            self._spawn(getattr(worker, "__name__", "worker"), worker(self, self._stop))
        log.info("runtime_started", workers=[t.get_name() for t in self._tasks])

    def _spawn(self, name: str, coro: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker_died", worker=name)
                raise

        self._tasks.append(asyncio.create_task(guarded(), name=name))

    async def stop(self) -> None:
        self._stop.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self.settings.shutdown_timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._producer_started:
            await self.producer.stop()
        await self.engine.dispose()
        log.info("runtime_stopped")

    async def check_ready(self) -> None:
        await ping(self.engine)
        for task in self._tasks:
            if task.done():
                raise RuntimeError(f"worker {task.get_name()} is not running")
        for check in self.readiness_checks:
            await check()

    async def run_forever(self) -> None:
        """Entry point of a worker-only process: runs until SIGTERM/SIGINT."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

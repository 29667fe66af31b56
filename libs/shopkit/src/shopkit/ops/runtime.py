"""A service's process, composed from parts a service lists, started and stopped together.

The runtime owns the infrastructure every part shares: two connection pools (a bulkhead: the
HTTP requests get their own, so a flood of requests never queues the saga behind it), the
Kafka producer, and one LISTEN connection (`listener`) that wakes parts on a commit. On top
of it run the parts:

- `consumers`: the service's saga steps (batched idempotent consumers, see consumer.py);
- the outbox relay (always, when the process runs workers);
- `workers`: other background loops of the service (deadline sweepers, …);
- `components`: parts that run in *every* process of the service, also an API-only one
  (run_workers=false, or one of several HTTP processes that is not the one running the
  workers: shopkit.ops.roles) — e.g. the order service's listener for `Prefer: wait`.

Workers and components are `async def part(runtime, stop)` coroutines: they run until `stop`
is set. `on_start` hooks are awaited before the process serves anything (warm a pool, check a
schema); `on_stop` hooks after every part has stopped, in reverse order. Graceful shutdown: stop taking new messages, finish the batch in hand, commit, close.
"""

import asyncio
import signal
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shop_contracts import Event, topics
from shopkit.database.engine import create_engine, fill_pool, ping, session_factory, ssl_mode
from shopkit.database.listen import PgListener
from shopkit.database.migrations import upgrade
from shopkit.database.retention import run_retention
from shopkit.database.uow import UnitOfWork
from shopkit.messaging.consumer import EventConsumer, Handler
from shopkit.messaging.kafka import Producer, ensure_topics, make_producer
from shopkit.messaging.outbox import OutboxRelay
from shopkit.ops.logging import configure_logging, get_logger
from shopkit.ops.metrics import EVENT_LOOP_LAG
from shopkit.ops.roles import runs_workers
from shopkit.ops.tracing import configure_tracing
from shopkit.settings import ServiceSettings

log = get_logger(__name__)

_LOOP_TICK_S = 1.0

Worker = Callable[["Runtime", asyncio.Event], Awaitable[None]]
Hook = Callable[["Runtime"], Awaitable[None]]
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
    components: list[Worker] = field(default_factory=list)
    readiness_checks: list[Check] = field(default_factory=list)
    degraded_checks: dict[str, Check] = field(default_factory=dict)
    """Dependencies whose failure degrades some requests but leaves the process ready (its
    other endpoints work): /readyz names them instead of answering 503."""
    on_start: list[Hook] = field(default_factory=list)
    on_stop: list[Hook] = field(default_factory=list)
    publishes: bool = True
    """False for a process that has no outbox of its own to relay."""
    engine: AsyncEngine = field(init=False)
    """The workers' pool (consumers, relay, sweepers)."""
    sessions: async_sessionmaker[AsyncSession] = field(init=False)
    api_engine: AsyncEngine = field(init=False)
    """The HTTP requests' pool."""
    api_sessions: async_sessionmaker[AsyncSession] = field(init=False)
    listener: PgListener = field(init=False)
    producer: Producer = field(init=False)
    loop_lag_s: float = field(init=False, default=0.0)
    _stop: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(init=False, default_factory=list)
    _producer_started: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        configure_logging(
            self.settings.service_name, self.settings.log_level, self.settings.log_json
        )
        configure_tracing(self.settings.service_name)
        worker_pool = self.settings.model_copy(
            update={"db_pool_size": self.settings.db_worker_pool_size, "db_max_overflow": 0}
        )
        self.engine = create_engine(worker_pool)
        self.sessions = session_factory(self.engine)
        self.api_engine = create_engine(self.settings)
        self.api_sessions = session_factory(self.api_engine)
        self.listener = PgListener(
            self.settings.database_url,
            application_name=f"{self.settings.service_name}-listener",
            ssl=ssl_mode(self.settings),
        )
        self.readiness_checks.append(self.listener.check_ready)

    def unit_of_work(self) -> UnitOfWork:
        """A unit of work of a worker (the workers' pool): shopkit.database.uow."""
        return UnitOfWork(self.sessions, self.settings.service_name, self.engine)

    def api_unit_of_work(self) -> UnitOfWork:
        """A unit of work of an HTTP use case (the API pool): shopkit.database.uow."""
        return UnitOfWork(self.api_sessions, self.settings.service_name, self.api_engine)

    async def start(self) -> None:
        if self.migrations is not None and self.settings.run_migrations:
            await upgrade(self.migrations, self.settings.database_url)
        workers = runs_workers(self.settings)
        if self.settings.db_fill_pools:
            await fill_pool(self.api_engine, self.settings.db_pool_size)
            if workers:
                await fill_pool(self.engine, self.settings.db_worker_pool_size)
        for hook in self.on_start:
            await hook(self)
        for component in self.components:
            self._spawn(_name(component), component(self, self._stop))
        if workers:
            await self._start_workers()
        self._spawn("listener", self.listener.run(self._stop))
        self._spawn("loop-watch", self._watch_loop())
        log.info("runtime_started", parts=[t.get_name() for t in self._tasks])

    async def _start_workers(self) -> None:
        await ensure_topics(self.settings, list(topics.ALL_TOPICS))
        self.producer = make_producer(self.settings)
        await self.producer.start()
        self._producer_started = True
        if self.publishes:
            relay = OutboxRelay(self.settings, self.sessions, self.producer, self.listener)
            self._spawn("outbox-relay", relay.run(self._stop))
            self._spawn("retention", run_retention(self.sessions, self.settings, self._stop))
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
            self._spawn(_name(worker), worker(self, self._stop))

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
        for hook in reversed(self.on_stop):
            try:
                await hook(self)
            except Exception:
                log.exception("stop_hook_failed", hook=_name(hook))
        await self.engine.dispose()
        await self.api_engine.dispose()
        log.info("runtime_stopped")

    async def _watch_loop(self) -> None:
        """Measures how late the event loop runs a timer: a loop blocked by a stray synchronous
        call shows here (and fails liveness), a wedged one does not answer /healthz at all."""
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            started = loop.time()
            try:
                async with asyncio.timeout(_LOOP_TICK_S):  # no task per tick, as wait_for makes
                    await self._stop.wait()
                return
            except TimeoutError:
                pass
            self.loop_lag_s = max(loop.time() - started - _LOOP_TICK_S, 0.0)
            EVENT_LOOP_LAG.labels(self.settings.service_name).set(self.loop_lag_s)

    def check_alive(self) -> None:
        """Liveness: raises when a part of the process died (a consumer, the relay, a worker:
        restarting the process is the cure) or its event loop was blocked too long."""
        if self._stop.is_set():
            return
        dead = [task.get_name() for task in self._tasks if task.done()]
        if dead:
            raise RuntimeError(f"{', '.join(dead)} died")
        if self.loop_lag_s > self.settings.liveness_max_loop_lag_s:
            raise RuntimeError(f"the event loop was blocked for {self.loop_lag_s:.1f} s")

    async def degraded(self) -> dict[str, str]:
        """The degraded dependencies and why (empty when all is well)."""
        found = {}
        for name, check in self.degraded_checks.items():
            try:
                await check()
            except Exception as exc:
                found[name] = str(exc) or type(exc).__name__
        return found

    async def check_ready(self) -> None:
        await ping(self.api_engine)
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


def _name(part: Worker | Hook) -> str:
    return getattr(part, "__name__", "worker")

"""The ranking service against the real stack: the shared fixtures of shopkit.testing.plugin
(a temp database, a unique topic prefix, the API over real HTTP in this process), and its own:
the Faust worker as a real process (so it can be SIGKILLed and restarted) and the sales it
counts. Helpers are fixtures (test modules import nothing from here)."""

import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime
from pathlib import Path

import asyncpg
import pytest
from aiokafka.partitioner import DefaultPartitioner

from ranking.config import Settings
from ranking.main import MIGRATIONS, create_app
from shop_contracts import Envelope, OrderPaid, PaidLine, topics
from shopkit.messaging.kafka import ensure_topics
from shopkit.testing import asyncpg_dsn, eventually, publish_envelope
from shopkit.testing.plugin import service_fixtures
from shopkit.testing.service import ServiceUnderTest

Sold = dict[tuple[date, int], int]


globals().update(
    service_fixtures(
        ServiceUnderTest(
            "ranking",
            Settings,
            create_app,
            MIGRATIONS,
            overrides={
                # the tests use fixed dates in the past; nothing may expire under them
                "retention_days": 36_500,
                "stream_mirror_interval_s": 0.1,
                "stream_session_timeout_s": 6,
                # offsets are committed rarely, so a killed worker replays what it had done
                "stream_commit_interval_s": 30,
            },
        )
    )
)


@pytest.fixture(scope="session")
def process_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a ranking process (worker, CLI) use these settings."""
    return {
        **os.environ,
        "RANKING_DATABASE_URL": settings.database_url,
        "KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
        "RANKING_RETENTION_DAYS": str(settings.retention_days),
        "RANKING_STREAM_MIRROR_INTERVAL_S": str(settings.stream_mirror_interval_s),
        "RANKING_STREAM_SESSION_TIMEOUT_S": str(settings.stream_session_timeout_s),
        "RANKING_STREAM_COMMIT_INTERVAL_S": str(settings.stream_commit_interval_s),
        "LOG_LEVEL": "INFO",
    }


class StreamWorker:
    """`python -m ranking.workers` as a child process."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self._ready_before = 0

    def start(self) -> None:
        self._ready_before = self._ready_lines()
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ranking.workers"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def ready(self) -> None:
        """Until this start's Faust worker says it is ready (recovery done, consuming)."""

        async def said_ready() -> bool:
            assert self.process is not None
            assert self.process.poll() is None, f"the worker exited, see {self.log}"
            return self._ready_lines() > self._ready_before

        await eventually(said_ready, timeout_s=120, interval_s=0.2)

    def _ready_lines(self) -> int:
        if not self.log.exists():
            return 0
        return self.log.read_bytes().count(b"[^Worker]: Ready")

    def kill(self) -> None:
        """SIGKILL: no flush, no commit, no goodbye to the consumer group."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()


@pytest.fixture(scope="session")
async def worker(
    settings: Settings,
    base_url: str,
    process_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[StreamWorker]:
    # the API (base_url) runs before the worker, as in production
    await ensure_topics(settings, [topics.ORDER_EVENTS, topics.DEAD_LETTER])
    stream = StreamWorker(process_env, tmp_path_factory.mktemp("ranking") / "worker.log")
    stream.start()
    await stream.ready()
    yield stream
    stream.stop()


@pytest.fixture
def paid() -> Callable[..., OrderPaid]:
    """paid(at, [(product_id, quantity), …], order_id=…, name=…, price=…) -> OrderPaid"""

    def make(
        at: datetime,
        lines: list[tuple[int, int]],
        *,
        order_id: uuid.UUID | None = None,
        name: str = "",
        price: int = 1_000,
    ) -> OrderPaid:
        paid_lines = [
            PaidLine(product_id=p, name=name or f"product {p}", quantity=q, unit_price=price)
            for p, q in lines
        ]
        total = sum(line.quantity * line.unit_price for line in paid_lines)
        return OrderPaid(
            order_id=order_id or uuid.uuid4(),
            user_id=random.randint(1, 2**62),
            lines=paid_lines,
            subtotal=total,
            discount=0,
            total=total,
            paid_at=at,
        )

    return make


@pytest.fixture
def publish_paid(settings: Settings) -> Callable[..., Awaitable[list[Envelope]]]:
    """Publish OrderPaid events as the order service would (occurred_at = paid_at)."""

    async def publish(*orders: OrderPaid) -> list[Envelope]:
        envelopes = [Envelope.wrap(o, producer="order", occurred_at=o.paid_at) for o in orders]
        await publish_envelope(settings.topic(topics.ORDER_EVENTS), *envelopes)
        return envelopes

    return publish


@pytest.fixture
def sold(settings: Settings) -> Callable[[list[int]], Awaitable[Sold]]:
    """What the mirror holds for these products: units per (day, product), shards summed."""

    async def query(product_ids: list[int]) -> Sold:
        db = await asyncpg.connect(asyncpg_dsn(settings.database_url))
        try:
            rows = await db.fetch(
                "SELECT day, product_id, sum(quantity) AS qty FROM daily_sales"
                " WHERE product_id = ANY($1::bigint[]) GROUP BY day, product_id",
                product_ids,
            )
        finally:
            await db.close()
        return {(r["day"], r["product_id"]): int(r["qty"]) for r in rows}

    return query


@pytest.fixture
def new_products() -> Callable[[int], list[int]]:
    """n product ids no other test uses."""

    def make(n: int) -> list[int]:
        base = random.randint(1, 2**40)
        return [base + i for i in range(n)]

    return make


@pytest.fixture
def same_partition_orders(settings: Settings) -> Callable[[int], list[uuid.UUID]]:
    """n order ids keyed to one partition of ORDER_EVENTS: its events are processed in
    order, so once the last one is counted, all the others have been seen."""

    def make(n: int) -> list[uuid.UUID]:
        partitions = list(range(settings.kafka_topic_partitions))
        target = random.choice(partitions)
        partitioner = DefaultPartitioner()
        found: list[uuid.UUID] = []
        while len(found) < n:
            candidate = uuid.uuid4()
            if partitioner(str(candidate).encode(), partitions, partitions) == target:
                found.append(candidate)
        return found

    return make

"""The ranking's Faust app: OrderPaid in, units sold per product per business day out.

- The agent reads the envelope JSON of ORDER_EVENTS and counts every OrderPaid into `sales`,
  a table of tumbling 1-day windows keyed by (product, source partition). The window is picked
  by the event's own time (`paid_at`, as local wall-clock time: see domain.calendar), never by
  when it is processed. Name and price ride along from the event.
- Counting is exactly-once on top of at-least-once delivery (see stream.tally): replays after
  a crash and copies of an event change nothing. A copy published again by an outbox comes
  minutes later and is known by its event id (remembered `dedupe_hours`); a dead letter replayed
  days later is for the consumer that gave up on it, and the worker skips a replay meant for
  another consumer unread (it counted that sale itself: shopkit.messaging.reading.wanted).
  Faust's loop; reading, dead letters and tracing are shopkit's, as the consumer engine's
  (shopkit.messaging.reading, .deadletter).
- A timer mirrors changed counts into the ranking DB (`daily_sales`), where the snapshot
  reads them: with N workers each one holds only its partitions of the table, the DB sees all.
  After a restart the table is rebuilt from its changelog and every restored count is written
  again, so nothing held only in memory is needed.
- Old windows are dropped by a timer of our own: Faust's expiry misses keys restored from the
  changelog (faust-streaming #385) and `on_window_close` is not used. The changelog topics are
  `compact,delete` with the retention as their lifetime, so Kafka forgets old days too.
- A crontab just after midnight (business timezone, on the leader) writes the daily snapshot.
"""

from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, cast

import faust
from aiokafka.admin import NewTopic
from faust.tables.wrappers import WindowWrapper
from faust.transport.consumer import Consumer
from faust.windows import TumblingWindow
from mode.utils.times import want_seconds
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ranking.adapters.repository import DailySalesRow, RankingRepository
from ranking.config import Settings
from ranking.domain.calendar import DAY_S, HOUR_S, BusinessCalendar
from ranking.service.snapshots import take_snapshot
from ranking.stream import tally
from ranking.stream.tally import Tally
from shop_contracts import Envelope, OrderPaid, topics
from shopkit.database.engine import create_engine, session_factory
from shopkit.database.uow import UnitOfWork
from shopkit.messaging import reading
from shopkit.messaging.deadletter import letter, logged
from shopkit.ops.logging import get_logger

log = get_logger(__name__)

WindowKey = tuple[str, tuple[float, float]]  # (tally key, (window start, window end))
ROWS_PER_STATEMENT = 1_000
PAID = frozenset({OrderPaid.__name__})


class SalesStream:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.calendar = BusinessCalendar(settings.timezone)
        Path(settings.stream_data_dir).mkdir(parents=True, exist_ok=True)  # Faust makes one level
        self.consumer = settings.stream_app_id
        """Its name in the dead letters' `dlq.consumer` and in its spans."""
        self.app = faust.App(
            settings.topic(settings.stream_app_id),
            broker=[f"kafka://{h.strip()}" for h in settings.kafka_bootstrap_servers.split(",")],
            store="memory://",
            datadir=str(Path(settings.stream_data_dir) / "{conf.name}-data"),
            topic_partitions=settings.kafka_topic_partitions,
            topic_replication_factor=settings.kafka_replication_factor,
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=settings.stream_commit_interval_s,
            broker_session_timeout=settings.stream_session_timeout_s,
            broker_heartbeat_interval=min(3.0, settings.stream_session_timeout_s / 5),
            table_cleanup_interval=settings.stream_cleanup_interval_s,
            timezone=self.calendar.tz,
            web_enabled=False,
        )
        self.window = TumblingWindow(DAY_S, expires=timedelta(days=settings.retention_days))
        self.sales = self._windowed(
            "sales", self.window, "Units sold per (product, partition) per day"
        )
        # Copies of an event at other offsets (an outbox relay that published it again after a
        # crash) come minutes apart, not days: the event ids are kept hours, per hour of sale.
        self.copies_window = TumblingWindow(HOUR_S, expires=timedelta(hours=settings.dedupe_hours))
        self.events = self._windowed(
            "event_ids", self.copies_window, "First offset each event id was seen at"
        )
        self.source = self.app.topic(
            settings.topic(topics.ORDER_EVENTS), key_serializer="raw", value_serializer="raw"
        )
        self.dead_letters = self.app.topic(
            settings.topic(topics.DEAD_LETTER), key_serializer="raw", value_serializer="raw"
        )
        self._dirty: set[WindowKey] = set()
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None

        self.app.agent(self.source, name="ranking.sales")(self._consume)
        self.app.timer(settings.stream_mirror_interval_s, name="mirror")(self._mirror)
        self.app.timer(settings.stream_cleanup_interval_s, name="cleanup")(self._drop_old_days)
        self.app.crontab(settings.snapshot_cron, timezone=self.calendar.tz, on_leader=True)(
            self._daily_snapshot
        )
        self.sales.on_recover(self._restored)
        self.app.on_before_shutdown.connect(self._shutting_down)

    def changelog_topics(self) -> list[NewTopic]:
        """The tables' changelog topics as Faust declares them (partitions, replicas,
        `compact,delete`, retention): created before the worker starts (workers.__main__).
        Declared by Faust only once the worker subscribed, a changelog topic could miss the
        consumer's metadata; the first OrderPaid then crashed the agent on PartitionsMismatch
        ("changelog has 0 partitions") until the metadata was refreshed, minutes later."""
        conf = self.app.conf
        created = []
        for table in self.app.tables.values():
            topic = table.changelog_topic
            retention = int(want_seconds(topic.retention) * 1000) if topic.retention else None
            config: dict[str, Any] = {}
            policy = sorted({"compact"} if topic.compacting else set())
            policy += ["delete"] if topic.deleting else []
            if policy:
                config["cleanup.policy"] = ",".join(policy)
            if retention:
                config["retention.ms"] = retention
            config.update(topic.config or {})
            created.append(
                NewTopic(
                    topic.get_topic_name(),
                    topic.partitions or conf.topic_partitions,
                    topic.replicas or conf.topic_replication_factor,
                    topic_configs={key: str(value) for key, value in config.items()},
                )
            )
        return created

    def _windowed(self, name: str, window: TumblingWindow, description: str) -> WindowWrapper:
        return cast(WindowWrapper, self.app.Table(name, window=window, help=description))

    # -- the agent ------------------------------------------------------------------------

    async def _consume(self, stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            if not reading.wanted(message.headers, PAID, self.consumer):
                continue  # another consumer's event or replay (told by the headers, unread)
            await self.handle(message)

    async def handle(self, message: Any) -> None:
        """Counts one message (a Faust message: value, key, headers, topic, partition, offset)
        of ORDER_EVENTS, once however often it comes (see the module)."""

        async def unreadable(error: str) -> None:
            await self._dead_letter(message, error)

        read = await reading.read(message.value, PAID, unreadable)
        if read is None:
            return
        envelope, paid = read.envelope, read.event
        if not isinstance(paid, OrderPaid):
            return  # not reached: read() returns OrderPaid events only
        with reading.span("count", envelope, message.headers, message.topic, self.consumer):
            await self._count(envelope, paid, message.partition, message.offset)

    async def _count(
        self, envelope: Envelope, paid: OrderPaid, partition: int, offset: int
    ) -> None:
        """Synchronous on purpose: an agent that waits (on a database, say) while Faust settles
        its partitions after a restart lost records it had fetched meanwhile."""
        if self.calendar.day_of(paid.paid_at) < self._oldest_kept():
            log.warning("sale_older_than_retention_ignored", order_id=str(paid.order_id))
            return
        wall = self.calendar.wall_clock(paid.paid_at)
        events = self.events.relative_to(wall)
        event_id = str(envelope.event_id)
        first_seen_at = cast(int | None, _value(events, event_id))
        if tally.is_copy(first_seen_at, offset):
            log.info("duplicate_event_ignored", event_id=event_id, order_id=str(paid.order_id))
            return
        sales = self.sales.relative_to(wall)
        window = self.window.current(wall)
        for sale in tally.sales_of(paid.lines):
            tally_key = tally.tally_key(sale.product_id, partition)
            counted = tally.count(_value(sales, tally_key), sale, offset, paid.paid_at.timestamp())
            if counted is not None:
                sales[tally_key] = counted
                self._dirty.add((tally_key, (window[0], window[1])))
        if first_seen_at is None:
            events[event_id] = offset

    async def _dead_letter(self, message: Any, error: str, attempts: int | None = None) -> None:
        """The message as it came, its own headers (trace context) kept for a replay; sent
        through Faust's producer, written as every consumer writes them."""
        key, value, headers = letter(
            message, consumer=self.consumer, error=error, attempts=attempts
        )
        await self.dead_letters.send(key=key, value=value, headers=headers)
        logged(message, consumer=self.consumer, error=error, attempts=attempts)

    # -- the mirror in the ranking DB -----------------------------------------------------

    async def _restored(self) -> None:
        """The table was rebuilt from its changelog: write every count we now hold."""
        restored = set(self.sales.table.data.keys())
        self._dirty |= restored
        log.info("sales_table_restored", windows=len(restored))
        await self._rewind_uncommitted()

    async def _rewind_uncommitted(self) -> None:
        """Sends the source partitions nothing was ever committed for back to their beginning.

        Runs as recovery ends, before Faust resumes the stream and seeks it to the committed
        offsets. Records fetched in the instant a rebalance pauses the partitions are dropped,
        and the seek that should fetch them again does nothing for a partition without a
        committed offset (aiokafka seeks only offsets above 0): a worker restarted within its
        first commit interval skipped the events published while it was down. Replaying from
        the beginning counts nothing twice (each tally's `hw`)."""
        consumer = cast(Consumer, self.app.consumer)
        source = self.source.get_topic_name()
        if not any(tp.topic == source for tp in consumer.assignment()):
            # Nothing of the source is assigned (a broker restarting, a rebalance under way):
            # nothing to rewind, and aiokafka's seek would raise, which would end Faust's
            # recovery callback for good and leave the worker counting nothing (chaos round).
            return
        try:
            committed = await consumer.seek_to_committed()
        except AssertionError:  # the assignment went away meanwhile: as above
            log.warning("rewind_skipped_nothing_assigned")
            return
        fresh = [tp for tp, offset in committed.items() if tp.topic == source and not offset]
        if fresh:
            await consumer.seek_wait(await consumer.earliest_offsets(*fresh))
            log.info(
                "uncommitted_partitions_rewound", partitions=sorted(p.partition for p in fresh)
            )

    async def _mirror(self, _app: object = None) -> None:
        if not self._dirty:
            return
        batch, self._dirty = self._dirty, set()
        rows = self._rows(batch)
        try:
            async with self._session() as session, session.begin():
                repo = RankingRepository(session)
                for i in range(0, len(rows), ROWS_PER_STATEMENT):
                    await repo.save_daily_sales(rows[i : i + ROWS_PER_STATEMENT])
        except Exception:
            self._dirty |= batch  # the DB is down or busy: keep them for the next round
            log.exception("mirror_failed", rows=len(rows))

    def _rows(self, keys: set[WindowKey]) -> list[DailySalesRow]:
        store = self.sales.table.data
        rows = []
        for key in keys:
            value = cast(Tally | None, store.get(key))
            if value is None:
                continue  # dropped since
            tally_key, (start, _) = key
            product_id, shard = tally.parse_tally_key(tally_key)
            rows.append(
                DailySalesRow(
                    day=self.calendar.day_starting(start),
                    product_id=product_id,
                    shard=shard,
                    quantity=value["qty"],
                    name=value["name"],
                    price=value["price"],
                    last_sold_at=datetime.fromtimestamp(value["at"], UTC),
                )
            )
        return rows

    # -- housekeeping and the daily job ---------------------------------------------------

    def _oldest_kept(self) -> date:
        return self.calendar.oldest_kept(datetime.now(UTC), self.settings.retention_days)

    async def _drop_old_days(self, _app: object = None) -> None:
        """Drops sales older than the retention and event ids older than the dedupe hours, by
        the wall clock (Faust's own expiry follows the stream's time, which stops when sales do)."""
        oldest = self._oldest_kept()
        oldest_copy = (
            self.calendar.wall_clock(datetime.now(UTC)) - self.settings.dedupe_hours * HOUR_S
        )
        for table, too_old in (
            (self.sales, lambda start: self.calendar.day_starting(start) < oldest),
            (self.events, lambda start: start + HOUR_S < oldest_copy),
        ):
            store = table.table.data
            old = [k for k in list(store.keys()) if too_old(k[1][0])]
            for key in old:
                store.pop(key, None)
            if old:
                log.info("old_windows_dropped", table=table.name, windows=len(old))

    async def _daily_snapshot(self, _app: object = None) -> None:
        await self._mirror()
        units = partial(UnitOfWork, self._session, self.settings.service_name)
        ranking = await take_snapshot(units, self.settings, datetime.now(UTC))
        log.info(
            "daily_snapshot_taken",
            first_day=ranking.days.first.isoformat(),
            last_day=ranking.days.last.isoformat(),
            items=len(ranking.items),
        )

    def _session(self) -> AsyncSession:
        if self._sessions is None:  # created on Faust's event loop, on first use
            self._engine = create_engine(self.settings)
            self._sessions = session_factory(self._engine)
        return self._sessions()

    async def _shutting_down(self, _app: Any, /, *_: Any, signal: Any, **__: Any) -> None:
        await self._mirror()
        if self._engine is not None:
            await self._engine.dispose()


def _value(windowed: Any, key: str) -> Any:
    try:
        return windowed[key].value()
    except KeyError:
        return None

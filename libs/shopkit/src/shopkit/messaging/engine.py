"""The one consumer engine: the saga steps (shopkit.messaging.consumer) and the data-platform
relay (order.relay.worker) are this loop with a different `Work` and `Dispatch`.

The engine owns what every consumer needs the same way: joining the group (and joining again,
with capped backoff, when anything below fails), the long poll raced with the stop (and with the
dispatch's wake-up), offsets committed only for finished work and at most every
`consumer_commit_interval_s` while busy, committed at once on a revocation, when idle and when
stopping, and the lag gauge. Its two extension points are small:

- `Work`: what is done with a batch of messages (one partition's or a whole poll's), returning
  once each is finished (handled, a duplicate, or dead-lettered). Raising means the
  infrastructure is down: the engine restarts from the committed offsets. What is retried and
  what is dead-lettered is decided in shopkit.messaging.retry, nowhere else.
- `Dispatch` (shopkit.messaging.dispatch): how a poll's batches reach the work. `Inline` (the
  default) runs the whole poll at once and lingers between polls under load; `PerPartition`
  runs each partition's batch in a task of its own, the partition paused until it is done, so a
  slow answer holds back only its partition (the relay).
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

from shopkit.messaging.kafka import make_consumer, start_consumer, stop_consumer
from shopkit.ops.logging import get_logger
from shopkit.ops.metrics import CONSUMER_LAG
from shopkit.settings import ServiceSettings

log = get_logger(__name__)

Record: TypeAlias = ConsumerRecord[Any, Any]
Batches: TypeAlias = dict[TopicPartition, list[Record]]
Work: TypeAlias = Callable[[Sequence[Record]], Awaitable[None]]
"""Handles messages (each partition's in order); returns when each is finished; raises when
the infrastructure is down."""


class Offsets:
    """Offsets of finished work, committed to Kafka at most once per `interval_s` while busy
    (each commit is a request the broker writes), at once when the consumer goes idle, stops or
    loses partitions. A crash loses only the last interval's commits: those events are delivered
    again and found already handled."""

    def __init__(self, consumer: AIOKafkaConsumer, interval_s: float) -> None:
        self._consumer = consumer
        self._interval_s = interval_s
        self._pending: dict[TopicPartition, int] = {}
        self._position: dict[TopicPartition, int] = {}
        self._last = 0.0

    def started(self, tp: TopicPartition, offset: int) -> None:
        """Work from `offset` on is in hand (for `position` until it is done)."""
        self._position.setdefault(tp, offset)

    def done(self, offsets: dict[TopicPartition, int]) -> None:
        """Everything before these offsets is finished."""
        self._pending.update(offsets)
        self._position.update(offsets)

    def position(self, tp: TopicPartition) -> int | None:
        """The first offset not finished yet (None before any work on `tp`)."""
        return self._position.get(tp)

    async def commit(self, *, due_only: bool, only: set[TopicPartition] | None = None) -> None:
        now = asyncio.get_running_loop().time()
        if not self._pending or (due_only and now - self._last < self._interval_s):
            return
        offsets = {tp: offset for tp, offset in self._pending.items() if only is None or tp in only}
        if offsets:
            await self._consumer.commit(offsets)
        for tp in offsets:
            del self._pending[tp]
        self._last = now

    def forget(self, tps: set[TopicPartition]) -> None:
        for tp in tps:
            self._pending.pop(tp, None)
            self._position.pop(tp, None)


class Dispatch(Protocol):
    """How a poll's batches reach the work (shopkit.messaging.dispatch)."""

    wake: asyncio.Event
    """Set to end the current poll early (work finished: resume and commit)."""

    def attach(self, consumer: AIOKafkaConsumer, offsets: Offsets, work: Work) -> None:
        """A new group member: where to pause, resume and report finished work."""

    async def before_poll(self) -> None:
        """Called before each poll (e.g. to linger under load)."""

    async def dispatch(self, batches: Batches) -> None:
        """Hand over a poll's batches; report finished ones with `offsets.done()`."""

    async def settle(self) -> bool:
        """Account for work finished since; True while any is still in hand."""

    async def release(self, tps: set[TopicPartition]) -> None:
        """Partitions going to another member: stop their work."""

    async def drain(self, timeout_s: float) -> None:
        """Stopping or restarting: let work in hand finish for up to `timeout_s`, cancel the rest."""


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, dispatch: Dispatch, offsets: Offsets) -> None:
        self.dispatch = dispatch
        self.offsets = offsets

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        tps = set(revoked)
        await self.dispatch.release(tps)
        try:
            await self.offsets.commit(due_only=False, only=tps)
        except Exception as exc:  # the next owner gets them again; dedupe makes that harmless
            log.warning("offsets_not_committed_on_revoke", error=repr(exc))
        self.offsets.forget(tps)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        return None


class ConsumerEngine:
    def __init__(
        self,
        settings: ServiceSettings,
        *,
        group_id: str,
        topics: Sequence[str],
        work: Work,
        dispatch: Dispatch,
    ) -> None:
        """`topics` are logical names (the settings' prefix is added)."""
        self.settings = settings
        self.group_id = group_id
        self.topics = list(topics)
        self.work = work
        self.dispatch = dispatch
        self.consumer: AIOKafkaConsumer | None = None
        self.offsets: Offsets | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; joins the group again, with backoff, when anything
        below fails."""
        backoff = 1.0
        while not stop.is_set():
            consumer = self.consumer = make_consumer(self.settings, self.group_id)
            offsets = self.offsets = Offsets(consumer, self.settings.consumer_commit_interval_s)
            self.dispatch.attach(consumer, offsets, self.work)
            consumer.subscribe(
                [self.settings.topic(t) for t in self.topics],
                listener=_Rebalance(self.dispatch, offsets),
            )
            try:
                await start_consumer(consumer)
                log.info("consumer_started", consumer=self.group_id, topics=self.topics)
                backoff = 1.0
                await self._consume(consumer, offsets, stop)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("consumer_crashed", consumer=self.group_id, retry_in_s=backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
                backoff = min(backoff * 2, 30.0)
            finally:
                await self._close(consumer, offsets)
        log.info("consumer_stopped", consumer=self.group_id)

    async def _consume(
        self, consumer: AIOKafkaConsumer, offsets: Offsets, stop: asyncio.Event
    ) -> None:
        while not stop.is_set():
            await self.dispatch.before_poll()
            batches = await poll(
                consumer, self.settings.consumer_batch_size, stop, self.dispatch.wake
            )
            if batches:
                await self.dispatch.dispatch(batches)
                self._observe_lag(consumer, offsets)
            busy = await self.dispatch.settle()
            await offsets.commit(due_only=bool(batches) or busy)

    async def _close(self, consumer: AIOKafkaConsumer, offsets: Offsets) -> None:
        """Finish (briefly), commit what was finished and leave the group, all within the
        shutdown timeout (half of it for the work in hand)."""
        try:
            await self.dispatch.drain(self.settings.shutdown_timeout_s / 2)
            await offsets.commit(due_only=False)
        except Exception as exc:  # not committed: delivered again and found already handled
            log.warning("offsets_not_committed_on_close", error=repr(exc))
        finally:
            await stop_consumer(consumer, self.settings.shutdown_timeout_s / 2)
            self.consumer = self.offsets = None

    def _observe_lag(self, consumer: AIOKafkaConsumer, offsets: Offsets) -> None:
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            position = offsets.position(tp)
            if highwater is not None and position is not None:
                CONSUMER_LAG.labels(self.group_id, tp.topic, tp.partition).set(
                    max(highwater - position, 0)
                )

    def backlog(self) -> int | None:
        """Messages on the assigned partitions not finished yet (None before any is known)."""
        consumer, offsets = self.consumer, self.offsets
        if consumer is None or offsets is None:
            return None
        total, known = 0, False
        for tp in consumer.assignment():
            highwater, position = consumer.highwater(tp), offsets.position(tp)
            if highwater is not None and position is not None:
                total += max(highwater - position, 0)
                known = True
        return total if known else None


IDLE_POLL_MS = 10_000
"""How long a poll waits while there is nothing to read (a message ends it at once, and so do
the stop and the dispatch's wake-up): idle, the loop wakes this rarely; a one-second poll was a
wakeup a second each."""


async def poll(
    consumer: AIOKafkaConsumer, max_records: int, stop: asyncio.Event, wake: asyncio.Event
) -> Batches:
    """A poll's batches, or none when `stop` or `wake` is set first (the poll is cancelled:
    what it fetched stays in the consumer's buffer for the next poll). Clears `wake`."""
    if stop.is_set():
        return {}
    if wake.is_set():
        wake.clear()
        return {}
    polling = asyncio.ensure_future(
        consumer.getmany(timeout_ms=IDLE_POLL_MS, max_records=max_records)
    )
    interrupts = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait({polling, *interrupts}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for interrupt in interrupts:
            interrupt.cancel()
    wake.clear()
    if polling.done():
        batches: Batches = polling.result()
        return batches
    polling.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await polling
    return {}

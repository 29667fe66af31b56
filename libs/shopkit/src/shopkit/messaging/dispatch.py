"""How a poll's batches reach a consumer's work: the engine's (shopkit.messaging.engine) second
extension point, one of two policies."""

import asyncio
from collections.abc import Callable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from shopkit.messaging.engine import Batches, Offsets, Record, Work
from shopkit.messaging.pace import Pace
from shopkit.ops.logging import get_logger

log = get_logger(__name__)

T = TypeVar("T")


class Inline:
    """The whole poll (several partitions, each in its order) is one call of the work, and the
    next poll waits for it. Under load a round starts at most once per `linger_s`, so one call
    (one transaction, for the saga steps) carries the events of several polls; after a quiet
    spell a lone event is handled at once."""

    def __init__(self, linger_s: float) -> None:
        self.wake = asyncio.Event()  # never set: nothing finishes behind the loop's back
        self._linger_s = linger_s
        self._pace = Pace(linger_s)
        self._offsets: Offsets | None = None
        self._work: Work | None = None

    def attach(self, consumer: AIOKafkaConsumer, offsets: Offsets, work: Work) -> None:
        self._offsets, self._work = offsets, work
        self._pace = Pace(self._linger_s)

    async def before_poll(self) -> None:
        await self._pace.wait()

    async def dispatch(self, batches: Batches) -> None:
        offsets, work = _attached(self._offsets), _attached(self._work)
        self._pace.started()
        await work([m for msgs in batches.values() for m in msgs])
        offsets.done({tp: msgs[-1].offset + 1 for tp, msgs in batches.items()})

    async def settle(self) -> bool:
        return False

    async def release(self, tps: set[TopicPartition]) -> None:
        return None

    async def drain(self, timeout_s: float) -> None:
        return None


class PerPartition:
    """Each partition's batch is a call of the work in a task of its own, the partition paused
    until it is done: a slow answer holds back only its partition, and within a partition
    events go in order. A finished task wakes the engine's poll, so its partition is resumed (and
    fetched again from the next fetch on) and its offsets committed without waiting for the poll
    to time out. `drain_while()` false (e.g. the platform is down) cancels work in hand at once
    when stopping instead of letting it finish for a while: it would only wait."""

    def __init__(self, drain_while: Callable[[], bool] = lambda: True) -> None:
        self.wake = asyncio.Event()
        self._drain_while = drain_while
        self._busy: dict[TopicPartition, asyncio.Task[None]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._offsets: Offsets | None = None
        self._work: Work | None = None

    def attach(self, consumer: AIOKafkaConsumer, offsets: Offsets, work: Work) -> None:
        self._consumer, self._offsets, self._work = consumer, offsets, work
        self._busy.clear()

    async def before_poll(self) -> None:
        return None

    async def dispatch(self, batches: Batches) -> None:
        consumer, offsets = _attached(self._consumer), _attached(self._offsets)
        for tp, records in batches.items():
            consumer.pause(tp)
            offsets.started(tp, records[0].offset)
            task = asyncio.create_task(self._run(tp, records), name=f"consume-{tp}")
            task.add_done_callback(lambda _: self.wake.set())
            self._busy[tp] = task

    async def _run(self, tp: TopicPartition, records: list[Record]) -> None:
        await _attached(self._work)(records)
        _attached(self._offsets).done({tp: records[-1].offset + 1})

    async def settle(self) -> bool:
        """Resume the partitions whose batch is done; a failed batch (the database or Kafka
        down) raises here and restarts the consumer."""
        consumer = _attached(self._consumer)
        for tp, task in list(self._busy.items()):
            if task.done():
                del self._busy[tp]
                task.result()
                if tp in consumer.assignment():
                    consumer.resume(tp)
        return bool(self._busy)

    async def release(self, tps: set[TopicPartition]) -> None:
        await _cancel([self._busy.pop(tp) for tp in list(self._busy) if tp in tps])

    async def drain(self, timeout_s: float) -> None:
        pending = set(self._busy.values())
        if pending and self._drain_while():
            _, pending = await asyncio.wait(pending, timeout=timeout_s)
        await _cancel(list(pending))
        self._busy.clear()


def _attached(part: T | None) -> T:
    if part is None:
        raise RuntimeError("dispatch used before the engine attached a consumer")
    return part


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

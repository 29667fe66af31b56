"""The engine's dispatch policies as pure logic, with a fake consumer: PerPartition pauses a
partition while its batch is in hand, wakes the poll when the batch is done (instead of a short
poll timeout), then resumes it and reports its offsets; Inline runs a whole poll at once."""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from shopkit.messaging.dispatch import Inline, PerPartition
from shopkit.messaging.engine import Offsets

A = TopicPartition("t", 0)
B = TopicPartition("t", 1)


@dataclass
class FakeConsumer:
    assigned: set[TopicPartition] = field(default_factory=lambda: {A, B})
    paused: set[TopicPartition] = field(default_factory=set)

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def pause(self, tp: TopicPartition) -> None:
        self.paused.add(tp)

    def resume(self, tp: TopicPartition) -> None:
        self.paused.discard(tp)


@dataclass(frozen=True)
class Rec:
    offset: int


def _batches(**offsets: list[int]) -> Any:
    tps = {"a": A, "b": B}
    return {tps[name]: [Rec(o) for o in values] for name, values in offsets.items()}


async def test_per_partition_pauses_while_in_hand_wakes_when_done_then_resumes() -> None:
    consumer = FakeConsumer()
    offsets = Offsets(consumer, 0.0)  # type: ignore[arg-type]
    release = {A: asyncio.Event(), B: asyncio.Event()}
    worked: list[list[int]] = []

    async def work(records: Sequence[Any]) -> None:
        await release[A if records[0].offset < 100 else B].wait()
        worked.append([r.offset for r in records])

    dispatch = PerPartition()
    dispatch.attach(consumer, offsets, work)  # type: ignore[arg-type]
    await dispatch.dispatch(_batches(a=[5, 6], b=[100]))
    assert consumer.paused == {A, B}
    assert await dispatch.settle() is True
    assert (offsets.position(A), offsets.position(B)) == (5, 100)

    release[A].set()
    await asyncio.wait_for(dispatch.wake.wait(), timeout=5)
    assert await dispatch.settle() is True  # B still in hand
    assert consumer.paused == {B}
    assert worked == [[5, 6]]
    assert offsets.position(A) == 7

    await dispatch.release({B})  # B goes to another member: its work is cancelled
    assert await dispatch.settle() is False
    assert worked == [[5, 6]]


async def test_per_partition_drain_cancels_at_once_when_told_not_to_wait() -> None:
    consumer = FakeConsumer()
    offsets = Offsets(consumer, 0.0)  # type: ignore[arg-type]
    never = asyncio.Event()

    async def stuck(records: Sequence[Any]) -> None:
        await never.wait()

    dispatch = PerPartition(drain_while=lambda: False)
    dispatch.attach(consumer, offsets, stuck)  # type: ignore[arg-type]
    await dispatch.dispatch(_batches(a=[1]))
    await dispatch.drain(timeout_s=3600)  # returns at once: the platform is down
    assert await dispatch.settle() is False
    assert offsets.position(A) == 1  # nothing finished


async def test_inline_runs_a_whole_poll_in_one_call_and_reports_every_partition() -> None:
    consumer = FakeConsumer()
    offsets = Offsets(consumer, 0.0)  # type: ignore[arg-type]
    calls: list[list[int]] = []

    async def work(records: Sequence[Any]) -> None:
        calls.append([r.offset for r in records])

    dispatch = Inline(linger_s=0)
    dispatch.attach(consumer, offsets, work)  # type: ignore[arg-type]
    await dispatch.dispatch(_batches(a=[3, 4], b=[9]))
    assert calls == [[3, 4, 9]]
    assert (offsets.position(A), offsets.position(B)) == (5, 10)
    assert not consumer.paused
    assert await dispatch.settle() is False

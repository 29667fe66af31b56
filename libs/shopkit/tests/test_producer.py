"""The producer outlives a broker that lost its idempotence state: aiokafka's sender stops for
good on OutOfOrderSequenceNumber, so shopkit.messaging.kafka.Producer replaces it. (A fake aiokafka
producer stands in: a real broker loses that state only in a crash, which `make chaos` does.)"""

import asyncio
from typing import Any

import pytest
from aiokafka.errors import OutOfOrderSequenceNumber

from shopkit.messaging.kafka import PRODUCER_RENEWED, Message, Producer
from shopkit.ops.faults import is_transient


class FakeAioProducer:
    def __init__(self, broken: bool) -> None:
        self.broken = broken
        self.sent: list[Any] = []
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def send(self, topic: str, **kwargs: Any) -> "asyncio.Future[None]":
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.broken:
            done.set_exception(OutOfOrderSequenceNumber())
        else:
            self.sent.append((topic, kwargs["value"]))
            done.set_result(None)
        return done

    async def send_and_wait(self, topic: str, **kwargs: Any) -> None:
        await (await self.send(topic, **kwargs))


def producers(*broken: bool) -> tuple[Producer, list[FakeAioProducer]]:
    made: list[FakeAioProducer] = []

    def factory() -> Any:
        made.append(FakeAioProducer(broken[len(made)]))
        return made[-1]

    return Producer(factory), made


async def test_a_lost_sequence_replaces_the_producer_and_the_next_round_goes_through() -> None:
    producer, made = producers(True, False)
    await producer.start()
    renewed = PRODUCER_RENEWED._value.get()
    batch = [Message("t", b"1"), Message("t", b"2")]

    with pytest.raises(OutOfOrderSequenceNumber) as raised:
        await producer.send_all(batch)
    assert is_transient(raised.value)  # the outbox and the consumers send it again
    assert len(made) == 2
    assert made[0].stopped
    assert made[1].started
    assert PRODUCER_RENEWED._value.get() == renewed + 1

    await producer.send_all(batch)
    await producer.send_and_wait("dead letters", value=b"3")
    assert made[1].sent == [("t", b"1"), ("t", b"2"), ("dead letters", b"3")]


async def test_two_sends_that_meet_the_same_loss_renew_it_once() -> None:
    producer, made = producers(True, False, False)
    await producer.start()
    results = await asyncio.gather(
        producer.send_all([Message("t", b"1")]),
        producer.send_and_wait("t", value=b"2"),
        return_exceptions=True,
    )
    assert all(isinstance(r, OutOfOrderSequenceNumber) for r in results)
    assert len(made) == 2  # one new producer, not two

"""The relay's circuit breaker counts outages, not requests: the POSTs in flight when the
platform fails are one failure, the backoff doubles only when a later probe fails too, and only
an answer to a POST started after the last failure closes it. A fake clock, no real waits."""

import asyncio
from collections.abc import Iterator
from contextlib import AsyncExitStack

import pytest
from prometheus_client import REGISTRY

from order.relay.breaker import Attempt, CircuitBreaker
from order.relay.metrics import CIRCUIT_OPEN

INITIAL_S = 1.0
MAX_S = 16.0


class FakeClock:
    """time.monotonic and asyncio.sleep of the breaker: sleeping moves the clock on at once."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture(autouse=True)
def circuit_gauge_reset() -> Iterator[None]:
    yield
    CIRCUIT_OPEN.set(0)  # the gauge is the process's: leave it as the relay tests expect


def circuit_open_gauge() -> float | None:
    return REGISTRY.get_sample_value("dataplatform_circuit_open")


def make_breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(INITIAL_S, MAX_S, jitter_s=0.0, clock=clock, sleep=clock.sleep)


async def started(breaker: CircuitBreaker, stack: AsyncExitStack, n: int) -> list[Attempt]:
    """n POSTs started (and still in flight, until the stack closes)."""
    return [await stack.enter_async_context(breaker.attempt()) for _ in range(n)]


async def probe_fails(breaker: CircuitBreaker) -> float:
    async with breaker.attempt() as probe:
        pass
    return breaker.failed(probe, "HTTP 503")


async def test_8_partitions_failing_at_once_are_the_first_backoff_step_not_the_max() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    outage = asyncio.Event()

    async def partition() -> float:
        async with breaker.attempt() as attempt:
            await outage.wait()  # in flight when the platform fails
        return breaker.failed(attempt, "HTTP 503")

    partitions = [asyncio.create_task(partition()) for _ in range(8)]
    await asyncio.sleep(0)  # all 8 POSTs started
    outage.set()
    waits = await asyncio.gather(*partitions)

    assert breaker.is_open
    assert circuit_open_gauge() == 1
    assert waits == [INITIAL_S] * 8  # one step; the other 7 wait out the same backoff
    # The next probe failing is the second step (2 s), not the ninth (capped at 16 s).
    clock.now += INITIAL_S
    assert await probe_fails(breaker) == 2 * INITIAL_S


async def test_a_success_that_started_before_the_failure_does_not_close_it() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    async with AsyncExitStack() as stack:
        first, slow, slower = await started(breaker, stack, 3)
    breaker.failed(first, "timeout")

    breaker.answered(slow)  # a 2xx to a POST that was already on its way
    assert breaker.is_open
    assert circuit_open_gauge() == 1

    # Nor one that started before the *last* failure: a probe failed meanwhile.
    clock.now += INITIAL_S
    assert await probe_fails(breaker) == 2 * INITIAL_S
    breaker.answered(slower)
    assert breaker.is_open

    # A refusal of one order is an answer too, and just as stale.
    breaker.answered(slow)
    assert breaker.is_open


async def test_a_probe_failing_again_doubles_the_backoff_up_to_the_max() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    async with breaker.attempt() as attempt:
        pass
    assert breaker.failed(attempt, "HTTP 503") == INITIAL_S

    waits = [await probe_fails(breaker) for _ in range(6)]
    assert waits == [2.0, 4.0, 8.0, 16.0, 16.0, 16.0]
    # Each probe first waited out the backoff before it: nothing was sent earlier.
    assert clock.slept == [1.0, 2.0, 4.0, 8.0, 16.0, 16.0]
    assert breaker.is_open


async def test_a_long_outage_stays_at_the_max_backoff() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    waits = [await probe_fails(breaker) for _ in range(2000)]  # 2.0 ** 1999: no float
    assert waits[-1000:] == [MAX_S] * 1000


async def test_a_probe_answered_closes_it_and_posts_go_at_once_again() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    async with breaker.attempt() as attempt:
        pass
    breaker.failed(attempt, "connection refused")

    async with breaker.attempt() as probe:
        pass
    assert clock.slept == [INITIAL_S]
    breaker.answered(probe)
    assert not breaker.is_open
    assert circuit_open_gauge() == 0

    async with AsyncExitStack() as stack:
        await started(breaker, stack, 8)  # all at once: no turns, no wait
    assert clock.slept == [INITIAL_S]


async def test_a_failure_that_started_before_the_close_does_not_reopen_it() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    async with AsyncExitStack() as stack:
        first, slow = await started(breaker, stack, 2)
    breaker.failed(first, "HTTP 502")
    async with breaker.attempt() as probe:
        pass
    breaker.answered(probe)

    assert breaker.failed(slow, "timeout") == 0.0  # a timeout of the outage that is over
    assert not breaker.is_open

    # A POST started after the close failing is a new outage, from the first step.
    async with breaker.attempt() as fresh:
        pass
    assert breaker.failed(fresh, "HTTP 503") == INITIAL_S
    assert breaker.is_open


async def test_while_open_one_probe_at_a_time_and_the_waiters_go_together_once_it_closes() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    async with breaker.attempt() as attempt:
        pass
    breaker.failed(attempt, "HTTP 503")

    in_flight: list[Attempt] = []
    probe_answered, others_answered = asyncio.Event(), asyncio.Event()

    async def post(answer: asyncio.Event) -> None:
        async with breaker.attempt() as stamp:
            in_flight.append(stamp)
            await answer.wait()
            breaker.answered(stamp)  # as the relay does: inside the attempt

    async def settle() -> None:
        for _ in range(10):
            await asyncio.sleep(0)

    probe = asyncio.create_task(post(probe_answered))
    await settle()
    others = [asyncio.create_task(post(others_answered)) for _ in range(3)]
    await settle()
    assert len(in_flight) == 1  # the probe; the others wait their turn
    assert clock.slept == [INITIAL_S]

    probe_answered.set()
    await probe
    await settle()
    assert not breaker.is_open
    assert len(in_flight) == 4  # closed: the 3 waiting are in flight together, not by turns
    others_answered.set()
    await asyncio.gather(*others)

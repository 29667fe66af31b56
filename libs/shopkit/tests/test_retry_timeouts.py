"""Bounded patience for an event that times out on every attempt (shopkit.messaging.retry), as
logic: dead-lettered (`TimedOut`, with its reason) once it has timed out for longer than
`timeout_patience_s` AND the infrastructure answers the consumer's probe; waited out when the
probe fails too (an outage), when the failures are not timeouts, or without a patience (the
relay). Its clock survives the consumer's restarts. The consumer itself: test_consumer_timeouts."""

import asyncio

import asyncpg
import pytest
from sqlalchemy.exc import OperationalError

from shopkit.messaging.retry import (
    Decision,
    GaveUp,
    Next,
    RetryRule,
    TimedOut,
    Timeouts,
    decide,
    settle,
)
from shopkit.settings import ServiceSettings

STATEMENT_TIMEOUT = asyncpg.exceptions.QueryCanceledError(
    "canceling statement due to statement timeout"
)
OUTAGE = OperationalError("SELECT 1", {}, ConnectionRefusedError("database down"))
RULE = RetryRule(
    attempts=3,
    backoff_s=0.001,
    backoff_max_s=0.001,
    transient_backoff_s=0.001,
    transient_backoff_max_s=0.001,
    patience_s=None,
    timeout_patience_s=0.0,  # any time at all: each test says when the clock runs
)


class Probe:
    """The consumer's probe of the infrastructure, answering `answer`; counts the questions."""

    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.asked = 0

    async def __call__(self) -> bool:
        self.asked += 1
        return self.answer


class Attempt:
    """Raises `errors` one per call, then returns "done"; counts the calls."""

    def __init__(self, errors: list[BaseException]) -> None:
        self.errors, self.made = errors, 0

    async def __call__(self) -> str:
        self.made += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def failing(*errors: BaseException) -> Attempt:
    return Attempt(list(errors))


def test_the_decision_dead_letters_only_past_the_timeout_patience() -> None:
    rule = RetryRule(**{**RULE.__dict__, "timeout_patience_s": 300.0})

    def after(error: BaseException, timed_out_s: float, rule: RetryRule = rule) -> Next:
        return decide(
            error, failures=1, waits=3, waited_s=0, rule=rule, timed_out_s=timed_out_s
        ).next

    assert decide(
        STATEMENT_TIMEOUT, failures=0, waits=3, waited_s=0, rule=rule, timed_out_s=301
    ) == Decision(Next.TIMED_OUT)
    assert after(STATEMENT_TIMEOUT, 299) is Next.WAIT
    never = RetryRule(**{**RULE.__dict__, "timeout_patience_s": None})
    assert after(STATEMENT_TIMEOUT, 1e9, never) is Next.WAIT
    # a failure of the event's own is counted as before, whatever the clock says
    assert after(ValueError("a handler bug"), 1e9) is Next.RETRY


def test_the_saga_rule_takes_the_timeout_patience_from_the_settings() -> None:
    assert RetryRule.of(ServiceSettings()).timeout_patience_s == 300.0
    assert RetryRule.of(ServiceSettings(consumer_timeout_patience_s=42)).timeout_patience_s == 42


async def test_timing_out_on_every_attempt_while_the_infrastructure_answers_is_dead_lettered() -> (
    None
):
    probe = Probe(True)
    attempt = failing(*[STATEMENT_TIMEOUT] * 50)
    with pytest.raises(TimedOut) as timed_out:
        await settle(attempt, RULE, timeouts=Timeouts(probe), key="event-1")
    assert isinstance(timed_out.value, GaveUp)  # the consumer dead-letters it as any other
    assert timed_out.value.error is STATEMENT_TIMEOUT
    assert timed_out.value.attempts == attempt.made
    assert attempt.made >= 2  # the first timeout starts the clock
    assert probe.asked == 1
    assert timed_out.value.reason.startswith("timed out on every attempt for ")
    assert (
        "QueryCanceledError: canceling statement due to statement timeout" in timed_out.value.reason
    )


async def test_timeouts_while_the_probe_fails_are_an_outage_waited_out() -> None:
    probe = Probe(False)
    attempt = failing(*[STATEMENT_TIMEOUT] * 6)
    assert await settle(attempt, RULE, timeouts=Timeouts(probe), key="e") == ("done", 7)
    assert probe.asked >= 1  # asked once the clock was past the patience; it said no


async def test_within_the_patience_the_probe_is_not_asked() -> None:
    probe = Probe(True)
    rule = RetryRule(**{**RULE.__dict__, "timeout_patience_s": 1e9})
    attempt = failing(*[STATEMENT_TIMEOUT] * 4)
    assert await settle(attempt, rule, timeouts=Timeouts(probe), key="e") == ("done", 5)
    assert probe.asked == 0


async def test_failures_other_than_timeouts_start_the_clock_again() -> None:
    probe = Probe(True)
    timeouts = Timeouts(probe)
    loop = asyncio.get_running_loop()
    timeouts.since("e", loop.time() - 1e6)  # timing out for ages already
    attempt = failing(OUTAGE, STATEMENT_TIMEOUT, OUTAGE)
    rule = RetryRule(**{**RULE.__dict__, "timeout_patience_s": 1e5})
    assert await settle(attempt, rule, timeouts=timeouts, key="e") == ("done", 4)
    assert probe.asked == 0


async def test_without_timeouts_or_a_patience_a_timeout_is_waited_out_as_before() -> None:
    attempt = failing(*[STATEMENT_TIMEOUT] * 5)
    assert await settle(attempt, RULE) == ("done", 6)  # no Timeouts given (the relay)
    never = RetryRule(**{**RULE.__dict__, "timeout_patience_s": None})
    probe = Probe(True)
    attempt = failing(*[STATEMENT_TIMEOUT] * 5)
    assert await settle(attempt, never, timeouts=Timeouts(probe), key="e") == ("done", 6)
    assert probe.asked == 0


async def test_the_clock_goes_on_across_the_consumer_s_restarts() -> None:
    """After `patience_s` the consumer restarts (the transient error is raised) and the event is
    settled anew: its clock is where it was, so it is dead-lettered at its next timeout."""
    probe = Probe(True)
    timeouts = Timeouts(probe)
    restarting = RetryRule(**{**RULE.__dict__, "patience_s": 0.0, "timeout_patience_s": 1e5})
    twice = failing(STATEMENT_TIMEOUT, STATEMENT_TIMEOUT)
    with pytest.raises(asyncpg.exceptions.QueryCanceledError):
        await settle(twice, restarting, timeouts=timeouts, key="e")
    loop = asyncio.get_running_loop()
    started = timeouts.since("e", loop.time())
    assert started < loop.time()  # kept, not started again
    timeouts.forget("e")
    timeouts.since("e", started - 1e6)  # as if the restarts had gone on for long
    with pytest.raises(TimedOut):
        await settle(failing(STATEMENT_TIMEOUT), restarting, timeouts=timeouts, key="e")
    assert probe.asked == 1

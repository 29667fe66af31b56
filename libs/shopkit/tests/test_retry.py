"""The one retry decision (shopkit.messaging.retry), as pure logic: an event's own failure is
retried `attempts` times and then dead-lettered; the infrastructure's is waited out (the consumer
restarting after its patience), never dead-lettered."""

from dataclasses import replace

import pytest
from sqlalchemy.exc import OperationalError

from shopkit.messaging.retry import Decision, GaveUp, Next, RetryRule, decide, settle
from shopkit.settings import ServiceSettings

RULE = RetryRule(
    attempts=3,
    backoff_s=0.2,
    backoff_max_s=0.5,
    transient_backoff_s=0.1,
    transient_backoff_max_s=0.3,
    patience_s=60.0,
)
OUTAGE = OperationalError("SELECT 1", {}, ConnectionRefusedError("database down"))
BUG = ValueError("handler bug")


def test_an_event_failing_by_itself_is_retried_with_capped_backoff_then_dead_lettered() -> None:
    assert [decide(BUG, failures=n, waits=0, waited_s=0, rule=RULE) for n in (1, 2, 3)] == [
        Decision(Next.RETRY, 0.2),
        Decision(Next.RETRY, 0.4),
        Decision(Next.DEAD_LETTER),
    ]
    capped = replace(RULE, attempts=10)
    assert decide(BUG, failures=5, waits=0, waited_s=0, rule=capped) == Decision(Next.RETRY, 0.5)


def test_an_outage_is_waited_out_never_dead_lettered_and_restarts_after_the_patience() -> None:
    waits = [decide(OUTAGE, failures=9, waits=n, waited_s=59, rule=RULE) for n in (0, 1, 5)]
    assert waits == [Decision(Next.WAIT, 0.1), Decision(Next.WAIT, 0.2), Decision(Next.WAIT, 0.3)]
    assert decide(OUTAGE, failures=9, waits=9, waited_s=61, rule=RULE) == Decision(Next.RESTART)
    forever = replace(RULE, patience_s=None)
    assert decide(OUTAGE, failures=0, waits=0, waited_s=1e9, rule=forever).next is Next.WAIT


def test_the_saga_rule_comes_from_the_consumer_settings() -> None:
    rule = RetryRule.of(ServiceSettings(consumer_max_retries=2, consumer_transient_patience_s=5))
    assert (rule.attempts, rule.patience_s) == (3, 5)


# The same attempts, with no waits between them (a first wait of 0 doubles to 0) and no patience.
NO_WAIT = replace(RULE, backoff_s=0, transient_backoff_s=0, patience_s=None)


async def test_settle_counts_attempts_and_gives_up_on_the_event_s_own_failures() -> None:
    tried: list[int] = []

    async def always_bug() -> None:
        tried.append(1)
        raise BUG

    with pytest.raises(GaveUp) as gave_up:
        await settle(always_bug, NO_WAIT, first_error=BUG)  # one attempt made before
    assert (gave_up.value.attempts, len(tried)) == (3, 2)
    assert gave_up.value.reason == "ValueError: handler bug"


async def test_settle_waits_out_an_outage_between_failures_and_reports_the_waiting() -> None:
    failures = [OUTAGE, BUG, OUTAGE, OUTAGE]
    waiting: list[bool] = []

    async def flaky() -> str:
        if failures:
            raise failures.pop(0)
        return "done"

    assert await settle(flaky, NO_WAIT, on_waiting=waiting.append) == ("done", 5)
    assert waiting == [True, False]

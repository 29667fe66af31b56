"""One round of the chaos run inside `make test` (tests/chaos/engine.py says what it does and
checks; `make chaos` runs more). It restarts Kafka and PostgreSQL, so it runs last."""

import pytest

from tests.chaos.engine import Plan, run

pytestmark = pytest.mark.chaos


async def test_nothing_is_lost_when_every_process_crashes_and_the_infrastructure_restarts() -> None:
    report = await run(Plan(rounds=1))
    print("\n".join(report.lines()))  # noqa: T201 (shown with -s, and on failure)
    assert report.broken == [], "\n".join(report.lines())
    assert len(report.faults) == 11
    assert report.requests.total() > 50
    assert len(report.invariants) == 8

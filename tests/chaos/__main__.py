"""`make chaos`: the chaos run, longer than the one in `make test` (CHAOS_ROUNDS rounds of every
fault, default 3). Prints the faults injected, the requests sent and the invariants that held,
writes the same summary to benchmarks/reports/chaos-<time>.md, and exits 1 when one broke."""

import asyncio
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from tests.chaos.engine import Plan, run

REPORTS = Path(__file__).resolve().parents[2] / "benchmarks" / "reports"


def main() -> int:
    plan = Plan(
        rounds=int(os.environ.get("CHAOS_ROUNDS", "3")),
        users=80,
        requests_per_s=float(os.environ.get("CHAOS_RPS", "20")),
        settle_s=4.0,
    )
    started = datetime.now(UTC)
    report = asyncio.run(run(plan))
    for line in report.lines():
        print(f"chaos: {line}")  # noqa: T201 (the report is this command's output)
    REPORTS.mkdir(parents=True, exist_ok=True)
    summary = REPORTS / f"chaos-{started:%Y%m%dT%H%M%SZ}.md"
    verdict = "BROKEN" if report.broken else "all invariants held"
    summary.write_text(
        f"# Chaos run {started:%Y-%m-%d %H:%M} UTC: {verdict}\n\n"
        f"{plan.rounds} round(s), {plan.users} users, about {plan.requests_per_s:g} requests/s.\n\n"
        + "".join(f"- {line}\n" for line in report.lines())
    )
    print(f"chaos: summary in {summary}")  # noqa: T201
    return 1 if report.broken else 0


sys.exit(main())

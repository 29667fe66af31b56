"""`make chaos`: the chaos run, longer than the one in `make test` (CHAOS_ROUNDS rounds of every
fault, default 3). Prints the faults injected, the requests sent and the invariants that held;
exits 1 when one broke."""

import asyncio
import os
import sys

from tests.chaos.engine import Plan, run


def main() -> int:
    plan = Plan(
        rounds=int(os.environ.get("CHAOS_ROUNDS", "3")),
        users=80,
        requests_per_s=float(os.environ.get("CHAOS_RPS", "20")),
        settle_s=4.0,
    )
    report = asyncio.run(run(plan))
    for line in report.lines():
        print(f"chaos: {line}")  # noqa: T201 (the report is this command's output)
    return 1 if report.broken else 0


sys.exit(main())

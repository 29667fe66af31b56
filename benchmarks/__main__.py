"""`make bench`: starts the services as processes (throwaway databases, own topic prefix) and a
bare reference app, drives HTTP with wrk (a compiled load generator; Python only sets up and
checks), and prints one line per scenario:

    bench <scenario>: <rate>/s p50=<ms> p99=<ms> ratio=<x|-> [cpu/order=<ms>ms] ok|FAILED

(the order scenarios add their CPU per PAID order, and a line `cost <scenario>: …` by process)

then writes results.json, report.md and PNG charts to benchmarks/reports/<UTC time>/. Exits
non-zero when an invariant check failed. Sizes and durations: BENCH_* variables (config.py);
BENCH_ONLY=coupon-soldout,orders runs only those scenarios (and the references they need)."""

import asyncio
import os
import platform
import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks import orders, system, wrk
from benchmarks.checks import Check, Databases
from benchmarks.config import REFERENCE_OF, Config
from benchmarks.measure import Connections, Groups, Meter
from benchmarks.scenarios import Bench, log
from benchmarks.stats import Outcome, write_report
from shopkit.testing import ADMIN_DSN

REPORTS = Path(__file__).parent / "reports"


def scenario_runners(bench: Bench) -> dict[str, Callable[[], Awaitable[Outcome]]]:
    return {
        "coupon-soldout": bench.coupon_soldout,
        "coupon-winner": bench.coupon_winner,
        "coupon-rush": bench.coupon_rush,
        "charge-distinct": lambda: bench.charge(hot=False),
        "charge-hot": lambda: bench.charge(hot=True),
        "product-read": bench.product_read,
        "top5-read": bench.top5_read,
        "orders": lambda: orders.stepped(bench),
        "orders-hold": lambda: orders.hold(bench),
        "orders-wait": lambda: orders.closed_loop(bench),
        "tracing-cost": lambda: orders.tracing_cost(bench),
        "idle": bench.idle,
    }


def machine(config: Config) -> dict[str, Any]:
    return {
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpus": os.cpu_count(),
        "load_avg": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "python": platform.python_version(),
        "wrk": wrk.version(),
        "wrk_settings": f"{config.threads} threads, {config.connections} keep-alive connections, "
        f"{config.duration_s:g} s per figure, timeout {config.timeout_s:g} s",
        "service_processes": ", ".join(f"{s} {n}" for s, n in system.HTTP_PROCESSES.items()),
        "scenarios": ", ".join(config.only),
    }


async def run(config: Config, context: dict[str, Any]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    async with AsyncExitStack() as stack:
        log("starting the services, the ranking API and the reference app")
        shop = await system.start(stack, config.redis_url)
        context["notes"] = "; ".join(shop.notes)
        admin = await asyncpg.connect(ADMIN_DSN)
        stack.push_async_callback(admin.close)
        dbs = await Databases.open(shop.dsns, ("point", "coupon", "order", "reference"))
        stack.push_async_callback(dbs.close)
        groups = Groups(trees={name: [pid] for name, pid in shop.pids.items()})
        groups.add_infrastructure()
        groups.alone["bench (python)"] = os.getpid()
        meter = Meter(groups, Connections(admin, shop.databases))
        bench = Bench(config, shop, meter, dbs)
        runners = scenario_runners(bench)
        for name in config.only:
            route = REFERENCE_OF.get(name)
            if route and route not in bench.references:
                reference = await bench.reference(route)
                outcomes.append(reference)
                print(reference.line(), flush=True)
            log(f"scenario {name}")
            try:
                outcome = await runners[name]()
            except Exception as exc:  # one broken scenario must not hide the others
                log(f"scenario {name} raised {exc!r}")
                outcome = Outcome(name, "scenario", None, None, None, notes=f"raised {exc!r}")
                outcome.checks.append(Check("ran", False, repr(exc)))
            outcomes.append(outcome)
            print(outcome.line(), flush=True)
            if (cost := outcome.cost_line()) is not None:
                print(cost, flush=True)
        log("stopping")
    return outcomes


def main() -> int:
    config = Config()
    context = machine(config)
    print(
        f"machine: cpus={context['cpus']} python={context['python']} wrk={context['wrk']} "
        f"load={context['load_avg']} ({context['wrk_settings']})",
        flush=True,
    )
    outcomes = asyncio.run(run(config, context))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report = write_report(outcomes, REPORTS / stamp, context)
    print(f"report: {report}", flush=True)
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

"""`make bench`: starts the services as processes (throwaway databases, own topic prefix) and a
bare reference app, drives HTTP with wrk (a compiled load generator; Python only sets up and
checks), and prints one line per scenario:

    bench <scenario>: <rate>/s p50=<ms> p99=<ms> ratio=<x|-> [cpu/order=<ms>ms] ok|FAILED

(the order scenarios add their CPU per PAID order, and a line `cost <scenario>: …` by process)

then writes results.json, report.md and PNG charts to benchmarks/reports/<UTC time>/. Exits
non-zero when an invariant check failed. Sizes and durations: BENCH_* variables (config.py);
BENCH_ONLY=coupon-soldout,orders runs only those scenarios (and the references they need).

BENCH_AB=<commit> (e.g. HEAD~3) runs orders-wait and its reference on that commit's code and on
the working tree's, BENCH_AB_ROUNDS times each (A, B, A, B, …), and prints them side by side with
the B/A ratio of the CPU per PAID order (benchmarks/ab.py):

    ab cpu/order: A=<ms>ms B=<ms>ms B/A=<x> paid/s: A=<n> B=<n> ratio: A=<x> B=<x> ok|FAILED"""

import asyncio
import dataclasses
import os
import platform
import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks import ab, orders, system, wrk
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


async def run(
    config: Config,
    context: dict[str, Any],
    source: system.Source = system.WORKING_TREE,
    tag: str = "",
) -> list[Outcome]:
    """The chosen scenarios on a shop started from `source`; `tag` ends every outcome's name
    (A/B: "[A1]")."""
    outcomes: list[Outcome] = []

    def named(outcome: Outcome) -> Outcome:
        if tag:
            outcome.name = f"{outcome.name} {tag}"
        return outcome

    async with AsyncExitStack() as stack:
        log(f"starting the services, the ranking API and the reference app ({source.label})")
        shop = await system.start(stack, config.redis_url, source)
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
                reference = named(await bench.reference(route))
                outcomes.append(reference)
                print(reference.line(), flush=True)
            log(f"scenario {name}")
            try:
                outcome = await runners[name]()
            except Exception as exc:  # one broken scenario must not hide the others
                log(f"scenario {name} raised {exc!r}")
                outcome = Outcome(name, "scenario", None, None, None, notes=f"raised {exc!r}")
                outcome.checks.append(Check("ran", False, repr(exc)))
            outcomes.append(named(outcome))
            print(outcome.line(), flush=True)
            if (cost := outcome.cost_line()) is not None:
                print(cost, flush=True)
        log("stopping")
    return outcomes


async def run_ab(
    config: Config, context: dict[str, Any]
) -> tuple[list[Outcome], list[str], dict[str, Any]]:
    """BENCH_AB: orders-wait and /win on the commit (A) and the working tree (B), A then B in
    every round; prints the medians side by side. (Every run's outcomes, the report's section,
    the figures for results.json.)"""
    log(f"A/B: checking out {config.ab} under {ab.AB_DIR} and syncing its .venv")
    a = await asyncio.to_thread(ab.checkout, config.ab)
    b = dataclasses.replace(system.WORKING_TREE, label=ab.working_tree_label())
    labels = (a.label, b.label)
    context["ab"] = f"A = {a.label}, B = {b.label}, {config.ab_rounds} round(s) of A then B"
    only = dataclasses.replace(config, only=("orders-wait",))
    outcomes: list[Outcome] = []
    runs: dict[str, list[ab.Side]] = {"A": [], "B": []}
    notes: list[str] = []
    for round_ in range(1, config.ab_rounds + 1):
        for side, source in (("A", a), ("B", b)):
            tag = f"[{side}{round_}]"
            log(f"A/B round {round_}: {side} = {source.label}")
            got = await run(only, context, source, tag)
            notes.append(f"{tag} {context.pop('notes', '')}")
            outcomes += got
            scenario = next(o for o in got if o.kind == "scenario")
            reference = next((o for o in got if o.kind == "reference"), None)
            runs[side].append(ab.Side.of(scenario, reference))
    context["notes"] = "; ".join(notes)
    a_side, b_side = ab.median(runs["A"]), ab.median(runs["B"])
    rows = ab.table(a_side, b_side, labels)
    print("", *rows, "", ab.line(a_side, b_side), sep="\n", flush=True)
    section = [
        "## A/B: the cost of an order",
        "",
        f"orders-wait and its reference, A = {a.label} then B = {b.label}, "
        f"{config.ab_rounds} round(s); "
        + ("medians over the rounds. " if config.ab_rounds > 1 else "")
        + "CPU ms per PAID order over the shop's processes (the harness apart, not counted).",
        "",
        *rows,
        "",
    ]
    figures = {
        "A": {"label": a.label, **a_side.summary()},
        "B": {"label": b.label, **b_side.summary()},
        "cpu_per_order_b_over_a": ab.b_over_a(a_side.cpu_ms_per_paid, b_side.cpu_ms_per_paid),
    }
    return outcomes, section, {"ab": figures}


def main() -> int:
    config = Config()
    context = machine(config)
    print(
        f"machine: cpus={context['cpus']} python={context['python']} wrk={context['wrk']} "
        f"load={context['load_avg']} ({context['wrk_settings']})",
        flush=True,
    )
    sections: list[str] = []
    extra: dict[str, Any] = {}
    if config.ab:
        context["scenarios"] = "orders-wait (A/B)"
        outcomes, sections, extra = asyncio.run(run_ab(config, context))
    else:
        outcomes = asyncio.run(run(config, context))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report = write_report(outcomes, REPORTS / stamp, context, sections=sections, extra=extra)
    print(f"report: {report}", flush=True)
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

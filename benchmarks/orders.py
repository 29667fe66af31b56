"""Orders end to end at fixed arrival rates: wrk paces POST /orders (its Lua delay(), see
lua/common.lua), then the orders' own timestamps in the order database give POST → PAID.

Every step has its own users (pre-charged by inserting into the point database's `balances`)
and its own product (created through the API with enough stock), so one step's checks never
see another step's orders: every order terminal, all PAID, the balances dropped by exactly
Σ totals of the PAID orders and the stock by exactly Σ their units."""

import asyncio
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks import wrk
from benchmarks.checks import Check, answers, equal, rows_match_answers
from benchmarks.measure import Figures
from benchmarks.scenarios import Bench, log
from benchmarks.stats import Outcome, percentile

BALANCE_ORDERS = 50
"""each user's starting balance pays this many orders"""


@dataclass
class Step:
    target: float
    seconds: float
    post_rate: float = 0.0
    """POST /orders answered per second (wrk)"""
    created_per_s: float = 0.0
    """orders created per second of load (answered or still in flight when wrk stopped)"""
    orders: int = 0
    paid: int = 0
    failed: int = 0
    pending: int = 0
    failure_reasons: dict[str, int] = field(default_factory=dict)
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    paid_per_s: float = 0.0
    drain_s: float = 0.0
    p99_limit_ms: float = 0.0
    held: bool = False
    checks: list[Check] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)
    connections: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data["checks"] = [asdict(c) for c in self.checks]
        return data


async def run_step(
    bench: Bench, target: float, seconds: float
) -> tuple[Step, wrk.WrkResult, Figures]:
    c = bench.config
    order_db, point_db = bench.dbs.c["order"], bench.dbs.c["point"]
    step = Step(target=target, seconds=seconds, p99_limit_ms=c.order_p99_limit_ms)
    price, quantity = c.order_price, c.order_quantity
    pool = math.ceil(target * seconds * 1.1) + c.connections
    first = bench.users.take()
    last = first + pool - 1
    balance = price * quantity * BALANCE_ORDERS
    await point_db.execute(
        "INSERT INTO balances (user_id, balance)"
        " SELECT g, $3::bigint FROM generate_series($1::bigint, $2::bigint) g",
        first,
        last,
        balance,
    )
    stock = pool * BALANCE_ORDERS * quantity
    product = await bench.shop.create_product(price, stock)

    log(f"orders at {target:g}/s for {seconds:g} s ({pool} users, product {product})")
    await bench.meter.start()
    result = await _post_orders(bench, target, seconds, first, pool, product)
    ended = time.monotonic()
    pending, total = await _wait_terminal(bench, first, last, c.order_wait_s)
    step.drain_s = time.monotonic() - ended
    figures = await bench.meter.stop([("wrk", result.cpu_s)])
    step.cpu_s, step.connections = figures.cpu_s, figures.connections

    rows = await order_db.fetch(
        "SELECT status, coalesce(failure_reason, '') AS reason, count(*) AS n FROM orders"
        " WHERE user_id BETWEEN $1 AND $2 GROUP BY 1, 2",
        first,
        last,
    )
    for row in rows:
        if row["status"] == "PAID":
            step.paid += int(row["n"])
        elif row["status"] == "FAILED":
            step.failed += int(row["n"])
            step.failure_reasons[row["reason"]] = int(row["n"])
    step.orders, step.pending, step.post_rate = total, pending, result.rate
    step.created_per_s = total / result.duration_s if result.duration_s else 0.0
    latencies = [
        float(ms)
        for ms in await order_db.fetchval(
            "SELECT coalesce(array_agg(extract(epoch FROM finished_at - created_at) * 1000), '{}')"
            " FROM orders WHERE user_id BETWEEN $1 AND $2 AND finished_at IS NOT NULL",
            first,
            last,
        )
    ]
    step.p50_ms, step.p99_ms = percentile(latencies, 50), percentile(latencies, 99)
    step.max_ms = max(latencies, default=0.0)
    span = await order_db.fetchval(
        "SELECT extract(epoch FROM max(finished_at) - min(created_at)) FROM orders"
        " WHERE user_id BETWEEN $1 AND $2 AND status = 'PAID'",
        first,
        last,
    )
    step.paid_per_s = step.paid / float(span) if span else 0.0

    totals = await order_db.fetchrow(
        "SELECT coalesce(sum(total), 0) AS money, (SELECT coalesce(sum(l.quantity), 0)"
        "   FROM order_lines l JOIN orders p USING (order_id)"
        "   WHERE p.status = 'PAID' AND l.status = 'ORDERED' AND p.user_id BETWEEN $1 AND $2)"
        " AS units FROM orders WHERE status = 'PAID' AND user_id BETWEEN $1 AND $2",
        first,
        last,
    )
    assert totals is not None
    accounts, left = await bench.dbs.balances(first, last)
    stock_left = (await bench.shop.get("product", f"/products/{product}"))["stock"]
    step.checks = [
        answers(result, {"202"}),
        rows_match_answers("orders vs 202 answers", total, result.count("202"), c.connections),
        Check(
            "every order terminal",
            pending == 0,
            f"{pending} of {total} still PENDING {step.drain_s:.0f} s after the load"
            f" (waited at most {c.order_wait_s:g} s)",
        ),
        equal("all PAID", step.paid, total, f"(FAILED: {step.failure_reasons or 0})"),
        equal(
            "balance drop == Σ totals of PAID",
            accounts * balance - left,
            int(totals["money"]),
        ),
        equal("stock drop == Σ units of PAID", stock - int(stock_left), int(totals["units"])),
    ]
    step.held = (
        all(check.ok for check in step.checks)
        and step.p99_ms <= c.order_p99_limit_ms
        and step.created_per_s >= 0.9 * target
    )
    log(
        f"  {step.post_rate:.1f} POST/s, {step.paid} PAID {step.failed} FAILED "
        f"{step.pending} PENDING, POST→PAID p50 {step.p50_ms:.0f} ms p99 {step.p99_ms:.0f} ms"
        f", drained in {step.drain_s:.1f} s"
    )
    return step, result, figures


async def _post_orders(
    bench: Bench, target: float, seconds: float, first: int, pool: int, product: int
) -> wrk.WrkResult:
    c = bench.config
    return await wrk.run(
        wrk.Load(
            url=f"{bench.shop.urls['order']}/orders",
            script="order.lua",
            seconds=seconds,
            connections=c.connections,
            threads=c.threads,
            timeout_s=c.timeout_s,
            headers={**bench.shop.admin, "Content-Type": "application/json"},
            args={
                "base": first,
                "pool": pool,
                "rate": target,
                "product": product,
                "quantity": c.order_quantity,
            },
        )
    )


async def _wait_terminal(bench: Bench, first: int, last: int, wait_s: float) -> tuple[int, int]:
    """(still pending, orders) once none is PENDING and no new one appeared for a second, or
    after `wait_s`."""
    deadline = time.monotonic() + wait_s
    previous = -1
    while True:
        row = await bench.dbs.c["order"].fetchrow(
            "SELECT count(*) FILTER (WHERE status = 'PENDING') AS pending, count(*) AS n"
            " FROM orders WHERE user_id BETWEEN $1 AND $2",
            first,
            last,
        )
        assert row is not None
        pending, total = int(row["pending"]), int(row["n"])
        if (pending == 0 and total == previous) or time.monotonic() > deadline:
            return pending, total
        previous = total
        await asyncio.sleep(1.0)


def _outcome(name: str, steps: list[Step], chosen: Step | None, rate: float | None) -> Outcome:
    outcome = Outcome(
        name=name,
        kind="scenario",
        rate=rate,
        p50_ms=chosen.p50_ms if chosen else None,
        p99_ms=chosen.p99_ms if chosen else None,
    )
    for step in steps:
        outcome.checks += [
            Check(f"{step.target:g}/s: {ch.name}", ch.ok, ch.detail) for ch in step.checks
        ]
    outcome.details["steps"] = [s.summary() for s in steps]
    return outcome


async def stepped(bench: Bench) -> Outcome:
    c = bench.config
    if not c.order_rates:
        raise ValueError("BENCH_ORDER_RATES names no rate")
    steps: list[Step] = []
    runs: list[tuple[wrk.WrkResult, Figures]] = []
    for target in c.order_rates:
        step, result, figures = await run_step(bench, target, c.order_step_s)
        steps.append(step)
        runs.append((result, figures))
        if step.p99_ms > c.order_p99_limit_ms or step.pending:
            break
    held = [s for s in steps if s.held]
    best = max(held, key=lambda s: s.target) if held else None
    shown = best or steps[-1]
    outcome = _outcome("orders", steps, shown, best.target if best else 0.0)
    outcome.wrk, outcome.figures = runs[steps.index(shown)]
    outcome.notes = (
        f"Offered rates {', '.join(f'{r:g}' for r in c.order_rates)} /s, {c.order_step_s:g} s "
        f"each, stopping once p99 POST→PAID passes {c.order_p99_limit_ms:g} ms. Rate = the "
        "highest offered rate that held (all checks ok, p99 within the limit, orders created at "
        f"≥ 90 % of the offered rate); {'none held' if not best else f'{best.target:g}/s held'}. "
        "p50/p99 = POST→PAID (orders.finished_at − created_at), wrk, CPU and connection "
        "figures: of that step (or of the last one when none held); every step's in the "
        "table below and in results.json."
    )
    return outcome


async def hold(bench: Bench) -> Outcome:
    c = bench.config
    step, result, figures = await run_step(bench, c.order_hold_rate, c.order_hold_s)
    outcome = _outcome("orders-hold", [step], step, step.paid_per_s)
    outcome.wrk, outcome.figures = result, figures
    outcome.notes = (
        f"{c.order_hold_rate:g} orders/s offered for {c.order_hold_s:g} s; rate = PAID/s "
        "(PAID orders over first POST → last PAID); p50/p99 = POST→PAID."
        f" Held: {'yes' if step.held else 'no'}."
    )
    return outcome


async def tracing_cost(bench: Bench) -> Outcome:
    """Orders/s with tracing off, at the production ratio and at 100 %: the shop's processes
    restarted with each setting, orders offered above what the saga pays (BENCH_ORDER_HOLD_RATE)
    so PAID/s is its capacity. Run off, ratio, 100 %, ratio, off so that a drift of the machine
    falls on both sides; the cost of a setting = 1 − its mean PAID/s / off's."""
    c = bench.config
    plan: list[tuple[str, float | None]] = [
        ("off", None),
        (f"{c.tracing_ratio:.0%}", c.tracing_ratio),
        ("100%", 1.0),
        (f"{c.tracing_ratio:.0%}", c.tracing_ratio),
        ("off", None),
    ]
    steps: list[Step] = []
    runs: list[tuple[wrk.WrkResult, Figures]] = []
    paid: dict[str, list[float]] = {}
    try:
        for label, ratio in plan:
            log(f"tracing {label}: restarting the shop")
            await bench.shop.trace(ratio)
            bench.meter.groups.trees.update({n: [p] for n, p in bench.shop.pids.items()})
            step, result, figures = await run_step(bench, c.order_hold_rate, c.tracing_step_s)
            steps.append(step)
            runs.append((result, figures))
            paid.setdefault(label, []).append(step.paid_per_s)
            log(f"  tracing {label}: {step.paid_per_s:.1f} PAID/s")
    finally:
        await bench.shop.trace(None)
        bench.meter.groups.trees.update({n: [p] for n, p in bench.shop.pids.items()})
    mean = {label: sum(v) / len(v) for label, v in paid.items()}
    off = mean["off"]
    cost = {label: (1 - rate / off) * 100 if off else 100.0 for label, rate in mean.items()}
    production = f"{c.tracing_ratio:.0%}"
    outcome = _outcome("tracing-cost", steps, steps[1], mean[production])
    outcome.wrk, outcome.figures = runs[1]
    outcome.ratio = mean[production] / off if off else None
    outcome.checks.append(
        Check(
            f"tracing at {production} costs ≤ {c.tracing_budget_pct:g} % of PAID/s",
            cost[production] <= c.tracing_budget_pct,
            f"{cost[production]:.1f} %",
        )
    )
    outcome.details["paid_per_s"] = paid
    outcome.details["cost_pct"] = {label: round(v, 1) for label, v in cost.items()}
    outcome.notes = (
        f"{c.order_hold_rate:g} orders/s offered for {c.tracing_step_s:g} s per setting, the "
        f"shop restarted with each (order: {', '.join(label for label, _ in plan)}); spans "
        "exported over OTLP (the production exporter) to a sink that keeps nothing. Mean PAID/s: "
        + ", ".join(f"{label} {rate:.1f}" for label, rate in mean.items())
        + "; cost against off: "
        + ", ".join(f"{label} {v:.1f} %" for label, v in cost.items() if label != "off")
        + f". rate = PAID/s at {production}, ratio = that / PAID/s off."
    )
    return outcome

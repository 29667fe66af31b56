"""Orders end to end: wrk sends POST /orders, then the orders' own timestamps in the order
database give POST → PAID. Two ways to send them, with the same setup, wait and checks:

- paced (`orders`, `orders-hold`, `tracing-cost`): at a fixed arrival rate (wrk's Lua delay(),
  see lua/common.lua), each answered 202 at once;
- closed loop (`orders-wait`): every connection sends `Prefer: wait=30` and places its next
  order once the answer (201, the order PAID or FAILED) came back, so the shop runs as fast as it
  can: PAID/s is its capacity and CPU per PAID order its cost.

Every step has its own users (pre-charged by inserting into the point database's `balances`)
and its own product (created through the API with enough stock), so one step's checks never
see another step's orders: every order terminal, all PAID, the balances dropped by exactly
Σ totals of the PAID orders and the stock by exactly Σ their units. Every step reports the CPU
milliseconds per PAID order (benchmarks/cost.py)."""

import asyncio
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks import wrk
from benchmarks.checks import Check, answers, equal, rows_match_answers
from benchmarks.cost import Cost, describe, per_order
from benchmarks.measure import Figures
from benchmarks.scenarios import Bench, log
from benchmarks.stats import Outcome, percentile

BALANCE_ORDERS = 50
"""each user's starting balance pays this many orders"""
PREFER_WAIT_S = 30
"""closed loop: `Prefer: wait=` of every POST (the API's most)"""
CLOSED_LOOP_USERS_PER_S = 1_000
"""closed loop: users prepared per second of load, far above what the saga pays (a user gets
a second order only beyond that; each is funded for BALANCE_ORDERS)"""


@dataclass
class Step:
    target: float | None
    """offered orders/s; None: closed loop"""
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
    cpu_ms_per_paid: float | None = None
    """CPU ms per PAID order over the shop's processes (benchmarks/cost.py)"""
    cpu_ms_per_paid_by_process: dict[str, float] = field(default_factory=dict)
    harness_cpu_ms_per_paid: dict[str, float] = field(default_factory=dict)
    """wrk and the bench's own Python, per PAID order (not in cpu_ms_per_paid)"""
    connections: dict[str, Any] = field(default_factory=dict)

    @property
    def cost(self) -> Cost:
        return Cost(
            self.cpu_ms_per_paid, self.cpu_ms_per_paid_by_process, self.harness_cpu_ms_per_paid
        )

    @property
    def label(self) -> str:
        return "closed loop" if self.target is None else f"{self.target:g}/s"

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data["checks"] = [asdict(c) for c in self.checks]
        return data


async def run_step(
    bench: Bench, target: float | None, seconds: float
) -> tuple[Step, wrk.WrkResult, Figures]:
    """Orders at `target`/s (paced) or, for None, closed loop, for `seconds`; then the wait
    until every order is terminal, the figures and the checks."""
    c = bench.config
    order_db, point_db = bench.dbs.c["order"], bench.dbs.c["point"]
    step = Step(target=target, seconds=seconds, p99_limit_ms=c.order_p99_limit_ms)
    price, quantity = c.order_price, c.order_quantity
    per_s = CLOSED_LOOP_USERS_PER_S if target is None else target
    pool = math.ceil(per_s * seconds * 1.1) + c.connections
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

    log(f"orders {step.label} for {seconds:g} s ({pool} users, product {product})")
    await bench.meter.start()
    result = await _post_orders(bench, target, seconds, first, pool, product)
    ended = time.monotonic()
    pending, total = await _wait_terminal(bench, first, last, c.order_wait_s)
    step.drain_s = time.monotonic() - ended
    figures = await bench.meter.stop([("wrk", result.cpu_s)])
    step.cpu_s, step.connections = figures.cpu_s, figures.connections
    answered = "201" if target is None else "202"

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
    cost = per_order(step.cpu_s, step.paid)
    step.cpu_ms_per_paid = cost.total_ms
    step.cpu_ms_per_paid_by_process, step.harness_cpu_ms_per_paid = cost.by_group, cost.harness
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
        answers(result, {answered}),
        rows_match_answers(
            f"orders vs {answered} answers", total, result.count(answered), c.connections
        ),
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
    step.held = all(check.ok for check in step.checks) and (
        target is None
        or (step.p99_ms <= c.order_p99_limit_ms and step.created_per_s >= 0.9 * target)
    )
    log(
        f"  {step.post_rate:.1f} POST/s, {step.paid} PAID {step.failed} FAILED "
        f"{step.pending} PENDING, POST→PAID p50 {step.p50_ms:.0f} ms p99 {step.p99_ms:.0f} ms"
        f", drained in {step.drain_s:.1f} s; CPU per PAID order {describe(cost, top=4)}"
    )
    return step, result, figures


async def _post_orders(
    bench: Bench, target: float | None, seconds: float, first: int, pool: int, product: int
) -> wrk.WrkResult:
    """Paced at `target`/s, or closed loop: no rate, each answer awaited (Prefer: wait)."""
    c = bench.config
    headers = {**bench.shop.admin, "Content-Type": "application/json"}
    args: dict[str, str | int | float] = {
        "base": first,
        "pool": pool,
        "product": product,
        "quantity": c.order_quantity,
    }
    timeout_s = c.timeout_s
    if target is None:
        headers["Prefer"] = f"wait={PREFER_WAIT_S}"
        timeout_s = max(timeout_s, PREFER_WAIT_S + 5)
    else:
        args["rate"] = target
    return await wrk.run(
        wrk.Load(
            url=f"{bench.shop.urls['order']}/orders",
            script="order.lua",
            seconds=seconds,
            connections=c.connections,
            threads=c.threads,
            timeout_s=timeout_s,
            headers=headers,
            args=args,
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
            Check(f"{step.label}: {ch.name}", ch.ok, ch.detail) for ch in step.checks
        ]
    outcome.details["steps"] = [s.summary() for s in steps]
    if chosen is not None:
        outcome.details["cpu_ms_per_paid"] = chosen.cpu_ms_per_paid
        outcome.details["cpu_ms_per_paid_by_process"] = chosen.cpu_ms_per_paid_by_process
        outcome.details["harness_cpu_ms_per_paid"] = chosen.harness_cpu_ms_per_paid
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
    best = max(held, key=lambda s: s.target or 0.0) if held else None
    shown = best or steps[-1]
    outcome = _outcome("orders", steps, shown, best.target if best else 0.0)
    outcome.wrk, outcome.figures = runs[steps.index(shown)]
    outcome.notes = (
        f"Offered rates {', '.join(f'{r:g}' for r in c.order_rates)} /s, {c.order_step_s:g} s "
        f"each, stopping once p99 POST→PAID passes {c.order_p99_limit_ms:g} ms. Rate = the "
        "highest offered rate that held (all checks ok, p99 within the limit, orders created at "
        f"≥ 90 % of the offered rate); {'none held' if not best else f'{best.label} held'}. "
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


async def closed_loop(bench: Bench) -> Outcome:
    """orders-wait: BENCH_CONNECTIONS clients, each placing its next order once the last one's
    answer came (Prefer: wait=30: the order PAID or FAILED), for BENCH_ORDER_WAIT_LOAD_S. Rate =
    PAID/s, compared with the reference winner (the bare `win`: token check, Redis gate, one
    INSERT); the CPU per PAID order is the cost of an order."""
    c = bench.config
    step, result, figures = await run_step(bench, None, c.order_wait_load_s)
    outcome = _outcome("orders-wait", [step], step, step.paid_per_s)
    outcome.wrk, outcome.figures = result, figures
    outcome.compare(bench.references.get("win"))
    outcome.notes = (
        f"{c.connections} clients in a closed loop for {c.order_wait_load_s:g} s, each POST "
        f"with Prefer: wait={PREFER_WAIT_S} (answered once the order is PAID or FAILED), every "
        "order a new funded user, one product. Rate = PAID/s (PAID orders over first POST → "
        "last PAID), ratio = that / the bare winner's rate (/win); p50/p99 = POST→PAID. CPU per "
        f"PAID order (shop processes, load and drain): {describe(step.cost)}."
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

"""The chaos run: the whole shop (the four services, the data-platform relay, the ranking API and
worker, as processes outside local mode) under a steady mix of charges, coupon issues and orders,
while every process is killed -9 and started again, Redis is flushed, and Redis, Kafka and
PostgreSQL are restarted. Then, with everything back, the invariants that say nothing was lost or made up:

- every order ended (PAID or FAILED);
- for every user, charges - payments + refunds = balance, and per order the payments less the
  refunds are its total when PAID and nothing when FAILED;
- for every product, initial stock - units in PAID orders = stock;
- no coupon issued past its total or twice to a user, and every used coupon belongs to exactly one
  PAID order, which used it;
- every PAID order delivered to the data platform exactly once, and counted once in the ranking;
- no request answered 500, nor any 5xx but a 503 with Retry-After (API.md: while a part is away,
  the requests it fails get 503 with Retry-After; a 500 is a bug, whatever restarted).

A process that exits on its own during the run is started again, as its orchestrator would, and
reported. `make chaos` runs it longer (python -m tests.chaos); `make test` runs one round.
"""

import asyncio
import os
import random
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import redis.asyncio as redis

from shopkit.http.auth import mint
from shopkit.testing import ActAsUser, asyncpg_dsn, delete_topics, unique
from shopkit.testing.processes import System, start_rest_of_shop, start_system

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "deploy" / "local" / "stack.sh"
KILLED = ("point", "product", "coupon", "order", "order-relay", "ranking", "ranking-worker")


@dataclass(frozen=True)
class Plan:
    rounds: int = 1
    """Each round injects every fault once."""
    users: int = 40
    products: int = 3
    stock: int = 400
    coupon_total: int = 25
    requests_per_s: float = 12.0
    settle_s: float = 2.0
    """Load between two faults."""
    redis_url: str = os.environ.get("CHAOS_REDIS_URL", "redis://localhost:6379/12")
    saga_timeout_s: float = 40.0


@dataclass
class Report:
    faults: list[str] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)
    revived: list[str] = field(default_factory=list)
    invariants: dict[str, str] = field(default_factory=dict)
    broken: list[str] = field(default_factory=list)
    server_errors: Counter[str] = field(default_factory=Counter)
    """Answers no request should get: a 500, or another 5xx than a 503 with Retry-After."""

    def answered(self, kind: str, response: httpx.Response) -> None:
        self.answers[f"{kind} {response.status_code}"] += 1
        if response.status_code >= 500 and not (
            response.status_code == 503 and "retry-after" in response.headers
        ):
            retry_after = "" if "retry-after" in response.headers else " without Retry-After"
            self.server_errors[f"{kind} {response.status_code}{retry_after}"] += 1

    def lines(self) -> list[str]:
        out = [f"faults injected ({len(self.faults)}): {', '.join(self.faults)}"]
        out.append(
            "requests sent: "
            + ", ".join(f"{kind} {n}" for kind, n in sorted(self.requests.items()))
        )
        out.append(
            "answers: " + ", ".join(f"{kind} {n}" for kind, n in sorted(self.answers.items()))
        )
        if self.revived:
            out.append(f"exited on their own and were started again: {', '.join(self.revived)}")
        out += [f"held: {name}: {detail}" for name, detail in self.invariants.items()]
        out += [f"BROKEN: {problem}" for problem in self.broken]
        return out


@dataclass
class Shop:
    system: System
    http: httpx.AsyncClient
    admin: dict[str, str]
    product_ids: list[int]
    coupon_id: int

    def url(self, service: str, path: str) -> str:
        return f"{self.system.url(service)}{path}"

    async def db(self, service: str) -> asyncpg.Connection:
        return await asyncpg.connect(asyncpg_dsn(self.system.database_urls[service]))


async def start(stack: AsyncExitStack, plan: Plan) -> Shop:
    prefix = unique("t.chaos.") + "."
    stack.push_async_callback(delete_topics, {prefix})
    env = {
        "LOG_LEVEL": "WARNING",
        "REDIS_URL": plan.redis_url,
        "COUPON_REDIS_KEY_PREFIX": unique("chaos"),
        "ORDER_SAGA_TIMEOUT_S": str(plan.saga_timeout_s),
        "ORDER_DEADLINE_SWEEP_INTERVAL_S": "0.5",
        "RANKING_STREAM_MIRROR_INTERVAL_S": "1",
        "ORDER_RELAY_BACKOFF_MAX_S": "2",
    }
    system = await start_system(stack, prefix, env)
    await start_rest_of_shop(stack, system, env)
    http = await stack.enter_async_context(
        httpx.AsyncClient(timeout=15, auth=ActAsUser(system.secrets.jwt))
    )
    admin = {"Authorization": f"Bearer {mint(system.secrets.jwt, '0', 'admin')}"}
    products = []
    for n in range(plan.products):
        r = await http.post(
            f"{system.url('product')}/products",
            json={"name": f"chaos {n}", "price": 1_000 * (n + 1), "stock": plan.stock},
            headers=admin,
        )
        r.raise_for_status()
        products.append(int(r.json()["id"]))
    r = await http.post(
        f"{system.url('coupon')}/coupons",
        json={
            "name": "chaos 500 off",
            "discount_type": "FIXED",
            "discount_value": 500,
            "total_quantity": plan.coupon_total,
            "valid_days": 1,
            "min_order_amount": 0,
        },
        headers=admin,
    )
    r.raise_for_status()
    return Shop(system, http, admin, products, int(r.json()["id"]))


# ------------------------------------------------------------------------------------ load


async def load(shop: Shop, plan: Plan, report: Report, stop: asyncio.Event) -> None:
    """Charges, coupon issues and orders at a steady rate, whatever answers."""
    held: dict[int, int] = {}
    users = [random.randint(1, 2**62) for _ in range(plan.users)]
    in_flight: set[asyncio.Task[None]] = set()

    async def one() -> None:
        user = random.choice(users)
        kind = random.choices(["charge", "issue", "order"], weights=[3, 2, 5])[0]
        report.requests[kind] += 1
        try:
            if kind == "charge":
                r = await shop.http.post(
                    shop.url("point", f"/points/{user}/charge"),
                    json={"amount": random.randint(1, 30) * 1_000},
                )
            elif kind == "issue":
                r = await shop.http.post(
                    shop.url("coupon", f"/coupons/{shop.coupon_id}/issue"),
                    json={"user_id": user},
                )
                if r.status_code == 201:
                    held[user] = int(r.json()["user_coupon_id"])
            else:
                items = random.sample(shop.product_ids, random.randint(1, len(shop.product_ids)))
                r = await shop.http.post(
                    shop.url("order", "/orders"),
                    json={
                        "user_id": user,
                        "items": [
                            {"product_id": p, "quantity": random.randint(1, 3)} for p in items
                        ],
                        "user_coupon_id": held.pop(user, None) if random.random() < 0.5 else None,
                    },
                )
            report.answered(kind, r)
        except httpx.HTTPError as exc:
            report.answers[f"{kind} {type(exc).__name__}"] += 1

    while not stop.is_set():
        task = asyncio.create_task(one())
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        await asyncio.sleep(random.expovariate(plan.requests_per_s))
    if in_flight:
        await asyncio.wait(in_flight, timeout=30)


# ------------------------------------------------------------------------------------ faults


def _stack(*args: str) -> None:
    """stack.sh, patient: a broker restarting with every partition a test session made (and
    recovering them after a slow shutdown on a loaded machine) can take minutes."""
    env = {**os.environ, "KAFKA_START_TIMEOUT": "420", "PG_START_TIMEOUT": "180"}
    done = subprocess.run(
        ["bash", str(STACK), *args], capture_output=True, text=True, timeout=600, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"stack.sh {' '.join(args)} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        )


def faults(shop: Shop, plan: Plan) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
    def kill(name: str) -> Callable[[], Awaitable[None]]:
        async def crash_and_restart() -> None:
            process = shop.system.services[name]
            process.kill()
            await asyncio.sleep(0.5)
            await process.start(timeout_s=120)

        return crash_and_restart

    async def flush_redis() -> None:
        client = redis.Redis.from_url(plan.redis_url)
        try:
            await client.flushdb()
        finally:
            await client.aclose()

    async def restart(part: str) -> None:
        await asyncio.to_thread(_stack, "restart", part)

    return [
        *((f"kill -9 {name}", kill(name)) for name in KILLED),
        ("flush Redis", flush_redis),
        ("restart Redis", lambda: restart("redis")),
        ("restart Kafka", lambda: restart("kafka")),
        ("restart PostgreSQL", lambda: restart("postgres")),
    ]


async def revive(shop: Shop, report: Report) -> None:
    """Starts again what exited on its own (its orchestrator would)."""
    for name, process in shop.system.services.items():
        if process.process is not None and process.process.poll() is not None:
            report.revived.append(f"{name} (exit {process.process.returncode})")
            await process.start(timeout_s=120)


async def inject(shop: Shop, plan: Plan, report: Report) -> None:
    stop = asyncio.Event()
    traffic = asyncio.create_task(load(shop, plan, report, stop))
    try:
        await asyncio.sleep(plan.settle_s)
        for _ in range(plan.rounds):
            for name, fault in faults(shop, plan):
                await fault()
                report.faults.append(name)
                await asyncio.sleep(plan.settle_s)
                await revive(shop, report)
    finally:
        stop.set()
        await traffic


# ------------------------------------------------------------------------------------ checks


async def _eventually(probe: Callable[[], Awaitable[bool]], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await probe():
            return True
        await asyncio.sleep(1)
    return False


async def settle(shop: Shop, plan: Plan, report: Report) -> None:
    """Waits until every order ended, every PAID order reached the platform and the ranking."""

    async def quiet() -> bool:
        await revive(shop, report)
        orders = await shop.db("order")
        ranking = await shop.db("ranking")
        try:
            pending = await orders.fetchval("SELECT count(*) FROM orders WHERE status = 'PENDING'")
            paid_units = await orders.fetchval(
                "SELECT coalesce(sum(l.quantity), 0) FROM orders o JOIN order_lines l"
                " USING (order_id) WHERE o.status = 'PAID' AND l.status = 'ORDERED'"
            )
            paid = await orders.fetchval("SELECT count(*) FROM orders WHERE status = 'PAID'")
            counted = await ranking.fetchval("SELECT coalesce(sum(quantity), 0) FROM daily_sales")
        finally:
            await orders.close()
            await ranking.close()
        delivered = await _platform_orders(shop)
        return bool(pending == 0 and len(delivered) >= paid and counted >= paid_units)

    if not await _eventually(quiet, timeout_s=plan.saga_timeout_s + 120):
        report.broken.append(
            "the shop did not settle (orders pending, deliveries or counts missing)"
        )


async def _platform_orders(shop: Shop) -> list[str]:
    items = (await shop.http.get(shop.url("dataplatform", "/orders"))).json()["items"]
    return [str(item["order"]["order_id"]) for item in items]


async def check(shop: Shop, plan: Plan, report: Report) -> None:
    orders, points, products, coupons, ranking = [
        await shop.db(s) for s in ("order", "point", "product", "coupon", "ranking")
    ]
    try:
        await _check(shop, plan, report, orders, points, products, coupons, ranking)
    finally:
        for conn in (orders, points, products, coupons, ranking):
            await conn.close()


async def _check(
    shop: Shop,
    plan: Plan,
    report: Report,
    orders: asyncpg.Connection,
    points: asyncpg.Connection,
    products: asyncpg.Connection,
    coupons: asyncpg.Connection,
    ranking: asyncpg.Connection,
) -> None:
    def holds(name: str, problems: list[str], detail: str) -> None:
        if problems:
            report.broken += [f"{name}: {p}" for p in problems[:10]]
        else:
            report.invariants[name] = detail

    by_status = dict(await orders.fetch("SELECT status, count(*) FROM orders GROUP BY status"))
    holds(
        "every order terminal",
        [f"{by_status['PENDING']} PENDING"] if by_status.get("PENDING") else [],
        f"{by_status.get('PAID', 0)} PAID, {by_status.get('FAILED', 0)} FAILED",
    )

    users = await points.fetch(
        "SELECT b.user_id, b.balance, coalesce(sum(CASE l.type WHEN 'PAYMENT' THEN -l.amount"
        " ELSE l.amount END), 0) AS net FROM balances b LEFT JOIN ledger l USING (user_id)"
        " GROUP BY b.user_id, b.balance"
    )
    holds(
        "charges - payments + refunds = balance",
        [
            f"user {u['user_id']}: {u['balance']} != {u['net']}"
            for u in users
            if u["balance"] != u["net"]
        ],
        f"{len(users)} users",
    )
    paid_net = dict(
        await points.fetch(
            "SELECT order_id, sum(CASE type WHEN 'PAYMENT' THEN amount ELSE -amount END)"
            " FROM ledger WHERE order_id IS NOT NULL GROUP BY order_id"
        )
    )
    totals = {
        r["order_id"]: (r["status"], r["total"])
        for r in await orders.fetch("SELECT order_id, status, total FROM orders")
    }
    holds(
        "each order paid its total once, or nothing",
        [
            f"order {o}: {status} total {total}, paid {paid_net.get(o, 0)}"
            for o, (status, total) in totals.items()
            if paid_net.get(o, 0) != (total if status == "PAID" else 0)
        ]
        + [f"payment for unknown order {o}" for o in paid_net if o not in totals],
        f"{len(totals)} orders",
    )

    sold = dict(
        await orders.fetch(
            "SELECT l.product_id, sum(l.quantity) FROM orders o JOIN order_lines l USING (order_id)"
            " WHERE o.status = 'PAID' AND l.status = 'ORDERED' GROUP BY l.product_id"
        )
    )
    stock = dict(
        await products.fetch(
            "SELECT id, stock FROM products WHERE id = ANY($1::bigint[])", shop.product_ids
        )
    )
    holds(
        "initial stock - units paid = stock",
        [
            f"product {p}: {plan.stock} - {sold.get(p, 0)} != {stock[p]}"
            for p in shop.product_ids
            if plan.stock - sold.get(p, 0) != stock[p]
        ],
        ", ".join(f"product {p}: {sold.get(p, 0)} sold" for p in shop.product_ids),
    )

    coupon = await coupons.fetchrow(
        "SELECT total_quantity, issued_quantity, (SELECT count(*) FROM user_coupons u"
        " WHERE u.coupon_id = c.id) AS copies, (SELECT count(DISTINCT user_id) FROM user_coupons u"
        " WHERE u.coupon_id = c.id) AS holders FROM coupons c WHERE id = $1",
        shop.coupon_id,
    )
    holds(
        "coupons within total, no user twice",
        [str(dict(coupon))]
        if not coupon["copies"]
        == coupon["holders"]
        == coupon["issued_quantity"]
        <= coupon["total_quantity"]
        else [],
        f"{coupon['copies']} of {coupon['total_quantity']} issued",
    )
    used = dict(
        await coupons.fetch(
            "SELECT id, used_order_id FROM user_coupons WHERE used_order_id IS NOT NULL"
        )
    )
    using = {
        r["user_coupon_id"]: r["order_id"]
        for r in await orders.fetch(
            "SELECT user_coupon_id, order_id FROM orders WHERE status = 'PAID'"
            " AND user_coupon_id IS NOT NULL"
        )
    }
    holds(
        "every used coupon belongs to exactly one PAID order",
        [
            f"coupon {c}: used by {o}, PAID order {using.get(c)}"
            for c, o in used.items()
            if using.get(c) != o
        ]
        + [
            f"PAID order {o} used coupon {c}, which is not marked used"
            for c, o in using.items()
            if c not in used
        ],
        f"{len(used)} used",
    )

    paid_ids = {str(o) for o, (status, _) in totals.items() if status == "PAID"}
    delivered = await _platform_orders(shop)
    twice = [o for o, n in Counter(delivered).items() if n > 1]
    holds(
        "every PAID order delivered to the platform exactly once",
        [f"not delivered: {o}" for o in sorted(paid_ids - set(delivered))]
        + [f"delivered but not PAID: {o}" for o in sorted(set(delivered) - paid_ids)]
        + [f"delivered twice: {o}" for o in twice],
        f"{len(delivered)} delivered",
    )
    counted = dict(
        await ranking.fetch("SELECT product_id, sum(quantity) FROM daily_sales GROUP BY product_id")
    )
    holds(
        "every PAID order counted once in the ranking",
        [
            f"product {p}: counted {counted.get(p, 0)}, sold {sold.get(p, 0)}"
            for p in shop.product_ids
            if counted.get(p, 0) != sold.get(p, 0)
        ],
        f"{sum(counted.values())} units counted",
    )


async def run(plan: Plan) -> Report:
    report = Report()
    async with AsyncExitStack() as stack:
        shop = await start(stack, plan)
        await inject(shop, plan, report)
        await settle(shop, plan, report)
        await check(shop, plan, report)
    report.broken += [
        f"answered {what}: {n} time(s)" for what, n in sorted(report.server_errors.items())
    ]
    return report

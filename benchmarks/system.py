"""The system under test: the services as processes (shopkit.testing.processes: throwaway
databases, an own topic prefix), the ranking API, the bare reference app, and the admin calls
that set up each scenario. Only the services' HTTP API and a few of their tables are used."""

import asyncio
import os
import sys
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import redis.asyncio as redis

from shopkit.http.auth import mint
from shopkit.testing import asyncpg_dsn, delete_topics, free_port, temp_database, unique
from shopkit.testing.processes import ServiceProcess, start_rest_of_shop, start_system

ROOT = Path(__file__).resolve().parents[1]
HTTP_PROCESSES = {
    service: int(os.environ.get(f"{service.upper()}_HTTP_WORKERS", default))
    for service, default in (
        ("point", 2),
        ("product", 2),
        ("coupon", 2),
        ("order", 1),
        ("ranking", 2),
    )
}
"""HTTP processes per service, as `make run` starts them (`<SVC>_HTTP_WORKERS`): one supervisor
per service starts them on one port, the first also runs the workers (shopkit.http.server); the CPU
figures count each service's whole process tree."""

SERVICE_ENV = {
    **{f"{service.upper()}_HTTP_WORKERS": str(n) for service, n in HTTP_PROCESSES.items()},
    "LOG_LEVEL": "WARNING",
    "ORDER_SAGA_TIMEOUT_S": "120",
    "OTEL_TRACES_EXPORTER": "none",
}
"""Tracing off, whatever the shell says: only tracing-cost turns it on."""


@dataclass(frozen=True)
class Source:
    """The code the shop runs: a checkout and the Python of its own .venv. The harness (this
    package, wrk, the reference app) is always the working tree's; BENCH_AB points the shop at a
    worktree of an earlier commit (benchmarks/ab.py)."""

    root: Path
    python: str
    label: str

    @property
    def here(self) -> bool:
        return self.root == ROOT

    def env(self) -> dict[str, str]:
        """For another checkout: its venv first on PATH, and no PYTHONPATH that could bring this
        tree's modules in (an empty PYTHONPATH is ignored)."""
        if self.here:
            return {}
        venv = Path(self.python).parent.parent
        return {
            "VIRTUAL_ENV": str(venv),
            "PATH": os.pathsep.join((str(venv / "bin"), os.environ.get("PATH", ""))),
            "PYTHONPATH": "",
        }


WORKING_TREE = Source(ROOT, sys.executable, "working tree")


@dataclass
class Shop:
    urls: dict[str, str]
    """service name (and "reference") → base URL"""
    pids: dict[str, int]
    """process name → pid, for the CPU figures"""
    databases: dict[str, str]
    """service name (and "reference") → database name"""
    dsns: dict[str, str]
    """service name (and "reference") → asyncpg DSN"""
    http: httpx.AsyncClient
    admin: dict[str, str]
    """Authorization header of an admin token (admin may act for every user)"""
    notes: list[str]
    processes: dict[str, ServiceProcess]
    """the shop's own processes (not the reference app), by name, to restart them"""

    async def trace(self, ratio: float | None) -> None:
        """Restarts the shop's processes with tracing off (None) or sampling `ratio` of the
        requests, exported over OTLP to the reference app's sink (which keeps nothing, as a
        collector on another machine would cost this one nothing); `pids` follows."""
        tracing = (
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_ENDPOINT": self.urls["reference"],
                "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": f"{ratio:g}",
            }
            if ratio is not None
            else {"OTEL_TRACES_EXPORTER": "none"}
        )
        await asyncio.gather(*(p.stop() for p in self.processes.values()))
        for process in self.processes.values():
            process.env.update(tracing)
        await asyncio.gather(*(p.start() for p in self.processes.values()))
        for name, process in self.processes.items():
            assert process.process is not None
            self.pids[name] = process.process.pid

    async def post(self, service: str, path: str, body: Any, expect: int = 201) -> Any:
        response = await self.http.post(
            f"{self.urls[service]}{path}", json=body, headers=self.admin
        )
        if response.status_code != expect:
            raise RuntimeError(
                f"POST {service}{path} → {response.status_code} {response.text[:300]}"
            )
        return response.json()

    async def get(self, service: str, path: str) -> Any:
        response = await self.http.get(f"{self.urls[service]}{path}", headers=self.admin)
        response.raise_for_status()
        return response.json()

    async def create_coupon(self, total: int) -> int:
        coupon = await self.post(
            "coupon",
            "/coupons",
            {
                "name": f"bench {total}",
                "discount_type": "FIXED",
                "discount_value": 100,
                "total_quantity": total,
                "valid_days": 30,
                "min_order_amount": 0,
            },
        )
        return int(coupon["id"])

    async def create_product(self, price: int, stock: int) -> int:
        product = await self.post(
            "product", "/products", {"name": "bench product", "price": price, "stock": stock}
        )
        return int(product["id"])


def admin_header(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(secret, '0', 'admin', ttl_s=24 * 3600)}"}


def database_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


async def start(stack: AsyncExitStack, redis_url: str, source: Source = WORKING_TREE) -> Shop:
    """Everything up and ready; torn down (databases dropped, Redis keys deleted) by `stack`.
    The shop's processes run `source`'s code with the same environment whichever it is (an
    earlier commit reads the same variables); the reference app is always this tree's."""
    run = unique("bench")
    coupon_prefix, reference_prefix = f"{run}-coupon", f"{run}-ref"
    stack.push_async_callback(_forget_redis_keys, redis_url, (coupon_prefix, reference_prefix))
    stack.push_async_callback(delete_topics, {f"{run}."})
    shop_env = {**SERVICE_ENV, **source.env()}
    env = {**shop_env, "REDIS_URL": redis_url, "COUPON_REDIS_KEY_PREFIX": coupon_prefix}
    system = await start_system(stack, f"{run}.", env, python=source.python, cwd=source.root)
    urls = {name: s.url for name, s in system.services.items()}
    sqlalchemy_urls = dict(system.database_urls)

    reference_url = await stack.enter_async_context(temp_database("bench_ref"))
    reference = ServiceProcess(
        name="reference",
        module="benchmarks.reference",
        port=free_port(),
        env={
            "BENCH_REF_DSN": asyncpg_dsn(reference_url),
            "BENCH_REF_REDIS_URL": redis_url,
            "BENCH_REF_PREFIX": reference_prefix,
            "BENCH_REF_POOL": os.environ.get("BENCH_REF_POOL", "16"),
        },
    )
    reference.env["BENCH_REF_PORT"] = str(reference.port)
    reference.env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    # The rest of the shop runs too, so its CPU is taken from what is measured as it would be
    # in production: the data-platform relay (and a stand-in platform) and the ranking worker.
    stack.push_async_callback(reference.stop)
    await reference.start()
    rest = await start_rest_of_shop(stack, system, shop_env, python=source.python, cwd=source.root)
    ranking = rest["ranking"]

    for name, process in (("ranking", ranking), ("reference", reference)):
        urls[name] = process.url
    sqlalchemy_urls["ranking"] = system.database_urls["ranking"]
    sqlalchemy_urls["reference"] = reference_url
    pids = {
        name: process.process.pid
        for name, process in {**system.services, "reference": reference}.items()
        if process.process is not None
    }
    http = await stack.enter_async_context(httpx.AsyncClient(timeout=60))
    shop = Shop(
        urls=urls,
        pids=pids,
        databases={name: database_name(url) for name, url in sqlalchemy_urls.items()},
        dsns={name: asyncpg_dsn(url) for name, url in sqlalchemy_urls.items()},
        http=http,
        admin=admin_header(system.secrets.jwt),
        notes=[] if source.here else [f"the shop runs {source.label} ({source.root})"],
        processes=dict(system.services),
    )
    await seed_ranking(shop)
    return shop


async def seed_ranking(shop: Shop) -> None:
    """Sales of 8 products over the last 3 completed days, then the daily job through the API,
    so that top-5 reads serve a full snapshot. (The Faust worker is not needed: the API reads
    the snapshot table.)"""
    today = datetime.now(ZoneInfo("Asia/Seoul")).date()
    rows = [
        (today - timedelta(days=d), p, 0, 10 * p + d, f"product {p}", 1000 * p)
        for d in (1, 2, 3)
        for p in range(1, 9)
    ]
    try:
        connection = await asyncpg.connect(shop.dsns["ranking"])
        try:
            await connection.executemany(
                "INSERT INTO daily_sales (day, product_id, shard, quantity, name, price,"
                " last_sold_at) VALUES ($1, $2, $3, $4, $5, $6, now())",
                rows,
            )
        finally:
            await connection.close()
        snapshot = await shop.post("ranking", "/rankings/snapshot", {"as_of": None})
        shop.notes.append(f"ranking snapshot seeded with {len(snapshot['items'])} items")
    except (asyncpg.PostgresError, RuntimeError, OSError) as exc:
        shop.notes.append(f"ranking snapshot not seeded ({exc}); top5-read serves an empty one")


async def _forget_redis_keys(url: str, prefixes: tuple[str, ...]) -> None:
    client = redis.from_url(url)
    try:
        for prefix in prefixes:
            keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
            for i in range(0, len(keys), 1000):
                await client.delete(*keys[i : i + 1000])
    finally:
        await client.aclose()

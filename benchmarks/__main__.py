"""`make bench`: starts the services as processes (throwaway databases, own topic prefix), runs
the scenarios, prints throughput and latency percentiles and writes a report with charts to
benchmarks/reports/<time>/. Sizes can be changed with BENCH_* environment variables."""

import asyncio
import os
import platform
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

import httpx
import redis.asyncio as redis

from benchmarks import scenarios
from benchmarks.stats import Result, print_table, write_report
from shopkit.auth import mint
from shopkit.testing import unique
from tests.e2e.harness import start_system

REPORTS = Path(__file__).parent / "reports"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://localhost:6379/12")


def size(name: str, default: int) -> int:
    return int(os.environ.get(f"BENCH_{name}", default))


async def main() -> None:
    client = redis.from_url(REDIS_URL)
    await client.flushdb()
    await client.aclose()
    env = {"REDIS_URL": REDIS_URL, "LOG_LEVEL": "WARNING", "ORDER_SAGA_TIMEOUT_S": "120"}
    admin = {
        "Authorization": f"Bearer {mint(os.environ.get('JWT_SECRET', 'local-dev-secret'), '0', 'admin')}"
    }
    results: list[Result] = []
    async with AsyncExitStack() as stack:
        system = await start_system(stack, unique("bench.") + ".", env)
        urls = {name: system.url(name) for name in system.services}
        limits = httpx.Limits(max_connections=2000, max_keepalive_connections=2000)
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:
            concurrency = size("CONCURRENCY", 200)
            results.append(
                await scenarios.coupon_rush(
                    http,
                    urls["coupon"],
                    admin,
                    size("RUSH_REQUESTS", 10_000),
                    size("RUSH_QUANTITY", 1_000),
                    concurrency,
                )
            )
            results.append(
                await scenarios.point_charges(
                    http, urls["point"], size("CHARGES", 2_000), concurrency
                )
            )
            results.append(
                await scenarios.order_saga(http, urls, admin, size("ORDERS", 1_000), concurrency)
            )
    print_table(results)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    context = {
        "when": stamp,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "client": "raw asyncio HTTP/1.1 (rush), httpx (others), same machine",
    }
    report = write_report(results, REPORTS / stamp, context)
    print(f"\nreport: {report}")


if __name__ == "__main__":
    asyncio.run(main())

"""The coupon rush: N concurrent issue requests for one coupon against a running coupon service.

    uv run python benchmarks/coupon_rush.py [URL] [--requests 10000] [--quantity 1000]
                                            [--concurrency 512] [--repeats 0.2]
                                            [--client httpx|asyncio]

URL defaults to $COUPON_URL or http://localhost:8003. The script creates a coupon with an admin
token (minted with $JWT_SECRET, default `local-dev-secret`), fires the requests (a share of them
repeats of earlier users), prints requests/s and the p50/p95/p99 latencies, checks the outcome
(exactly `quantity` issued, every other answer a 409) and writes the result as JSON to
benchmarks/reports/coupon_rush-<time>.json.

Two clients. `httpx` (the default) is plain asyncio + httpx, spread over several connection pools
(one httpx pool scans all its connections and queued requests on every change, which costs more
than the request itself once hundreds are in flight). It spends several times the service's own
CPU time on each request, so on a small machine it measures itself: `--client asyncio` sends the
same requests over raw keep-alive HTTP/1.1 connections (asyncio streams, a few lines below) and
shows what the service can take.
"""

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from shopkit.auth import mint

REPORTS = Path(__file__).parent / "reports"
CONNECTIONS_PER_POOL = 32


@dataclass(frozen=True)
class Outcome:
    status: int
    code: str | None
    latency_ms: float


def percentile(ordered: list[float], p: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def create_coupon(base_url: str, quantity: int) -> int:
    token = mint(os.environ.get("JWT_SECRET", "local-dev-secret"), "bench-admin", "admin")
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        r = await http.post(
            "/coupons",
            json={
                "name": f"rush of {quantity}",
                "discount_type": "FIXED",
                "discount_value": 1_000,
                "total_quantity": quantity,
                "valid_days": 1,
                "min_order_amount": 0,
            },
            headers={"Authorization": f"Bearer {token}"},
        )
        r.raise_for_status()
        coupon_id: int = r.json()["id"]
        return coupon_id


async def rush_httpx(
    base_url: str, coupon_id: int, users: list[int], concurrency: int
) -> tuple[list[Outcome], float]:
    pools = max(1, concurrency // CONNECTIONS_PER_POOL)
    per_pool = max(1, concurrency // pools)
    limits = httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
    clients = [
        httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) for _ in range(pools)
    ]
    slots = [asyncio.Semaphore(per_pool) for _ in range(pools)]
    path = f"/coupons/{coupon_id}/issue"

    async def issue(i: int, user_id: int) -> Outcome:
        async with slots[i % pools]:
            started = time.perf_counter()
            try:
                r = await clients[i % pools].post(path, json={"user_id": user_id})
            except httpx.HTTPError as exc:
                return Outcome(0, type(exc).__name__, (time.perf_counter() - started) * 1000)
            elapsed = (time.perf_counter() - started) * 1000
            code = r.json().get("code") if r.status_code >= 400 else None
            return Outcome(r.status_code, code, elapsed)

    try:
        started = time.perf_counter()
        outcomes = await asyncio.gather(*(issue(i, u) for i, u in enumerate(users)))
        return outcomes, time.perf_counter() - started
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


async def rush_asyncio(
    base_url: str, coupon_id: int, users: list[int], concurrency: int
) -> tuple[list[Outcome], float]:
    """`concurrency` keep-alive connections, each sending one request after another."""
    target = urlsplit(base_url)
    path = f"/coupons/{coupon_id}/issue"
    pending = iter(enumerate(users))
    outcomes: list[Outcome | None] = [None] * len(users)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(target.hostname, target.port)
        try:
            for i, user_id in pending:
                body = json.dumps({"user_id": user_id}).encode()
                started = time.perf_counter()
                writer.write(
                    f"POST {path} HTTP/1.1\r\nHost: {target.netloc}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                status_line, *headers = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
                length = next(
                    int(value)
                    for name, _, value in (h.partition(":") for h in headers)
                    if name.lower() == "content-length"
                )
                content = await reader.readexactly(length)
                status = int(status_line.split()[1])
                code = json.loads(content).get("code") if status >= 400 else None
                outcomes[i] = Outcome(status, code, (time.perf_counter() - started) * 1000)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    return [o for o in outcomes if o is not None], seconds


CLIENTS = {"httpx": rush_httpx, "asyncio": rush_asyncio}


async def main(args: argparse.Namespace) -> int:
    coupon_id = await create_coupon(args.url, args.quantity)
    distinct = round(args.requests * (1 - args.repeats))
    users = random.sample(range(1, 2**62), distinct)
    users += random.choices(users, k=args.requests - distinct)
    random.shuffle(users)

    outcomes, seconds = await CLIENTS[args.client](args.url, coupon_id, users, args.concurrency)

    async with httpx.AsyncClient(base_url=args.url, timeout=30) as http:
        coupon = (await http.get(f"/coupons/{coupon_id}")).json()
    latencies = sorted(o.latency_ms for o in outcomes)
    answers = Counter(f"{o.status} {o.code or ''}".strip() for o in outcomes)
    by_answer: dict[str, list[float]] = {}
    for o in outcomes:
        by_answer.setdefault(f"{o.status} {o.code or ''}".strip(), []).append(o.latency_ms)
    issued = answers.get("201", 0)
    ok = (
        issued == coupon["issued_quantity"] == min(args.quantity, distinct)
        and issued
        + answers.get("409 COUPON_SOLD_OUT", 0)
        + answers.get("409 COUPON_ALREADY_ISSUED", 0)
        == args.requests
    )
    result: dict[str, Any] = {
        "scenario": "coupon_rush",
        "at": datetime.now(UTC).isoformat(),
        "url": args.url,
        "coupon_id": coupon_id,
        "requests": args.requests,
        "distinct_users": distinct,
        "quantity": args.quantity,
        "concurrency": args.concurrency,
        "client": args.client,
        "seconds": round(seconds, 3),
        "requests_per_s": round(args.requests / seconds, 1),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(latencies[-1], 1),
        "mean_ms": round(statistics.fmean(latencies), 1),
        "answers": dict(answers),
        "latency_by_answer_ms": {
            answer: {
                "p50": round(percentile(sorted(ms), 50), 1),
                "p99": round(percentile(sorted(ms), 99), 1),
            }
            for answer, ms in by_answer.items()
        },
        "issued_quantity": coupon["issued_quantity"],
        "consistent": ok,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    REPORTS.mkdir(parents=True, exist_ok=True)
    report = REPORTS / f"coupon_rush-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    report.write_text(json.dumps(result, indent=2) + "\n")

    print(
        f"coupon rush: {args.requests:,} issue requests for {args.quantity:,} coupons "
        f"({distinct:,} distinct users), concurrency {args.concurrency}, {args.client} client"
    )
    print(
        f"  {result['requests_per_s']:,} requests/s over {seconds:.2f} s · "
        f"p50 {result['p50_ms']} ms · p95 {result['p95_ms']} ms · p99 {result['p99_ms']} ms"
    )
    print(f"  answers: {dict(answers)} · issued_quantity {coupon['issued_quantity']}")
    print(f"  {'consistent' if ok else 'INCONSISTENT'} · report {report}")
    return 0 if ok else 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "url", nargs="?", default=os.environ.get("COUPON_URL", "http://localhost:8003")
    )
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--quantity", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=512)
    parser.add_argument(
        "--repeats", type=float, default=0.2, help="share of requests by users already seen"
    )
    parser.add_argument("--client", choices=sorted(CLIENTS), default="httpx")
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))

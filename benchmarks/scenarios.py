"""Benchmark scenarios against the real services over HTTP."""

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import httpx

from benchmarks.stats import Result


async def _timed(
    call: Callable[[], Awaitable[httpx.Response]], latencies: list[float], statuses: Counter[str]
) -> httpx.Response | None:
    started = time.perf_counter()
    try:
        response = await call()
        statuses[str(response.status_code)] += 1
        return response
    except httpx.HTTPError as exc:
        statuses[type(exc).__name__] += 1
        return None
    finally:
        latencies.append((time.perf_counter() - started) * 1000)


async def run_concurrently(
    name: str,
    calls: list[Callable[[], Awaitable[httpx.Response]]],
    concurrency: int,
    notes: str = "",
) -> Result:
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    gate = asyncio.Semaphore(concurrency)

    async def one(call: Callable[[], Awaitable[httpx.Response]]) -> None:
        async with gate:
            await _timed(call, latencies, statuses)

    started = time.perf_counter()
    await asyncio.gather(*(one(c) for c in calls))
    return Result(name, len(calls), time.perf_counter() - started, latencies, dict(statuses), notes)


async def coupon_rush(
    http: httpx.AsyncClient,
    coupon_url: str,
    admin: dict[str, str],
    requests: int,
    quantity: int,
    concurrency: int,
) -> Result:
    """Uses the raw keep-alive client of coupon_rush.py: httpx costs more CPU than the service."""
    from benchmarks.coupon_rush import create_coupon, rush_asyncio

    coupon_id = await create_coupon(coupon_url, quantity)
    distinct = int(requests * 0.8)
    users = [random.randint(1, 2**62) for _ in range(distinct)]
    users += random.choices(users, k=requests - distinct)
    random.shuffle(users)
    outcomes, seconds = await rush_asyncio(coupon_url, coupon_id, users, concurrency)
    statuses = Counter(str(o.status) for o in outcomes)
    result = Result(
        f"coupon rush ({quantity} coupons)",
        len(outcomes),
        seconds,
        [o.latency_ms for o in outcomes],
        dict(statuses),
        notes=f"{requests} issue requests ({distinct} distinct users) over {concurrency} keep-alive "
        f"connections, coupon of {quantity}.",
    )
    issued = (await http.get(f"{coupon_url}/coupons/{coupon_id}")).json()["issued_quantity"]
    result.notes += f" Issued afterwards: {issued} (must equal {quantity})."
    return result


async def point_charges(
    http: httpx.AsyncClient, point_url: str, requests: int, concurrency: int
) -> Result:
    hot_user = random.randint(1, 2**62)
    calls = [
        (lambda: http.post(f"{point_url}/points/{hot_user}/charge", json={"amount": 1}))
        for _ in range(requests)
    ]
    result = await run_concurrently(
        "point charge (one hot user)",
        calls,
        concurrency,
        notes=f"{requests} charges of 1 won to one user, {concurrency} in flight (row-lock contention).",
    )
    balance = (await http.get(f"{point_url}/points/{hot_user}")).json()["balance"]
    result.notes += f" Balance afterwards: {balance} (must equal {requests})."
    return result


async def order_saga(
    http: httpx.AsyncClient,
    urls: dict[str, str],
    admin: dict[str, str],
    orders: int,
    concurrency: int,
) -> Result:
    product = (
        await http.post(
            f"{urls['product']}/products",
            json={"name": "bench", "price": 1000, "stock": orders // 2},
            headers=admin,
        )
    ).json()
    users = [random.randint(1, 2**62) for _ in range(orders)]
    await asyncio.gather(
        *(http.post(f"{urls['point']}/points/{u}/charge", json={"amount": 5000}) for u in users)
    )
    calls = [
        (
            lambda u=u: http.post(
                f"{urls['order']}/orders",
                json={
                    "user_id": u,
                    "items": [{"product_id": product["id"], "quantity": 1}],
                    "user_coupon_id": None,
                },
                headers={"Prefer": "wait=30"},
            )
        )
        for u in users
    ]
    result = await run_concurrently(
        "order saga end to end (Prefer: wait)",
        calls,
        concurrency,
        notes=(
            f"{orders} orders for a product with {orders // 2} in stock, {concurrency} in flight; latency is "
            "POST /orders until the saga ended (201) through product, coupon, point and Kafka."
        ),
    )
    stock = (await http.get(f"{urls['product']}/products/{product['id']}")).json()["stock"]
    result.notes += f" Stock afterwards: {stock} (must be 0)."
    return result

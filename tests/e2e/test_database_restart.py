"""PostgreSQL restarted, or its postmaster killed -9, under a steady mix of reads and writes on
every hot path and on FastAPI's: no request is answered 500, every 5xx is a 503 with Retry-After,
only requests sent while the database was away get one, and every path answers 2xx again once
it is back (issue 22, item 9: the pools handed the statements connections the restart had
closed, one failed request per connection in every pool).

The services run as processes, as in production, on a PostgreSQL server of this module's own
(shopkit.testing.postgres): the shared one serves the other tests meanwhile.
"""

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import httpx
import pytest

from shopkit.http.auth import mint
from shopkit.testing import ActAsUser, temp_database, unique
from shopkit.testing.postgres import PrivatePostgres
from shopkit.testing.processes import ServiceProcess, System, start_system
from shopkit.testing.servers import free_port

pytestmark = pytest.mark.e2e

BACK_WITHIN_S = 30.0
"""Every path answers 2xx to a request sent this long after the database is back, at most."""
GRACE_S = 0.5
"""A request sent this long after the database is back gets no 5xx at all (none does: a
margin for a loaded machine between the server being ready and pg_ctl saying so)."""
WORKERS_PER_PATH = 2
PAUSE_S = 0.05


@dataclass(frozen=True)
class HotPath:
    name: str
    send: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


@dataclass(frozen=True)
class Answer:
    path: str
    sent: float
    done: float
    status: int
    """0: no HTTP answer at all (the error is in `error`)."""
    retry_after: str | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def seen_from(self, down: float) -> str:
        """The answer, with its times from the outage's start."""
        return (
            f"{self.path}: {self.status or self.error} (Retry-After {self.retry_after}),"
            f" sent at {self.sent - down:+.2f} s, answered at {self.done - down:+.2f} s"
        )


@dataclass
class Shop:
    system: System
    http: httpx.AsyncClient
    paths: list[HotPath]


@pytest.fixture(scope="module")
async def shop(private_postgres: PrivatePostgres) -> AsyncIterator[Shop]:
    admin_dsn = private_postgres.admin_dsn
    env = {
        "LOG_LEVEL": "WARNING",
        "REDIS_URL": "redis://localhost:6379/13",
        "COUPON_REDIS_KEY_PREFIX": unique("dbrestart") + ":",
        "ORDER_SAGA_TIMEOUT_S": "600",
    }
    async with AsyncExitStack() as stack:
        system = await start_system(stack, unique("t.dbrestart.") + ".", env, admin_dsn)
        ranking_db = await stack.enter_async_context(temp_database("e2e_ranking", admin_dsn))
        port = free_port()
        ranking = ServiceProcess(
            name="ranking",
            port=port,
            env={
                "KAFKA_TOPIC_PREFIX": system.topic_prefix,
                **system.secrets.env(),
                **env,
                "RANKING_DATABASE_URL": ranking_db,
                "RANKING_HTTP_PORT": str(port),
            },
        )
        stack.push_async_callback(ranking.stop)
        await ranking.start()
        system.services["ranking"] = ranking

        http = await stack.enter_async_context(
            httpx.AsyncClient(timeout=15, auth=ActAsUser(system.secrets.jwt))
        )
        admin = {"Authorization": f"Bearer {mint(system.secrets.jwt, '0', 'admin')}"}
        r = await http.post(
            f"{system.url('product')}/products",
            json={"name": "restart socks", "price": 1_000, "stock": 10_000_000},
            headers=admin,
        )
        assert r.status_code == 201, r.text
        product_id = r.json()["id"]
        r = await http.post(
            f"{system.url('coupon')}/coupons",
            json={
                "name": "restart 100 off",
                "discount_type": "FIXED",
                "discount_value": 100,
                "total_quantity": 1_000_000,
                "valid_days": 1,
                "min_order_amount": 0,
            },
            headers=admin,
        )
        assert r.status_code == 201, r.text
        coupon_id = r.json()["id"]
        users = [random.randint(1, 2**62) for _ in range(20)]
        for user in users:
            r = await http.post(
                f"{system.url('point')}/points/{user}/charge", json={"amount": 1_000_000}
            )
            assert r.status_code == 200, r.text

        def url(service: str, path: str) -> str:
            return f"{system.url(service)}{path}"

        def order(http: httpx.AsyncClient, **headers: str) -> Awaitable[httpx.Response]:
            return http.post(
                url("order", "/orders"),
                json={
                    "user_id": random.choice(users),
                    "items": [{"product_id": product_id, "quantity": 1}],
                    "user_coupon_id": None,
                },
                headers=headers,
            )

        paths = [
            # the fast paths (derived from the routes, shopkit.http.fast)
            HotPath("product read", lambda h: h.get(url("product", f"/products/{product_id}"))),
            HotPath("top-5", lambda h: h.get(url("ranking", "/rankings/top-products"))),
            HotPath(
                "charge",
                lambda h: h.post(
                    url("point", f"/points/{random.choice(users)}/charge"), json={"amount": 1}
                ),
            ),
            HotPath(
                "coupon issue",
                lambda h: h.post(
                    url("coupon", f"/coupons/{coupon_id}/issue"),
                    json={"user_id": random.randint(1, 2**62)},
                ),
            ),
            HotPath("order", order),
            # FastAPI's routes (a header the fast path does not take hands a request on to them)
            HotPath("balance", lambda h: h.get(url("point", f"/points/{random.choice(users)}"))),
            HotPath(
                "order list",
                lambda h: h.get(url("order", f"/users/{random.choice(users)}/orders?limit=5")),
            ),
            HotPath(
                "charge with Idempotency-Key",
                lambda h: h.post(
                    url("point", f"/points/{random.choice(users)}/charge"),
                    json={"amount": 1},
                    headers={"Idempotency-Key": uuid.uuid4().hex},
                ),
            ),
            HotPath(
                "order with Idempotency-Key",
                lambda h: order(h, **{"Idempotency-Key": uuid.uuid4().hex}),
            ),
            HotPath("coupon read", lambda h: h.get(url("coupon", f"/coupons/{coupon_id}"))),
        ]
        yield Shop(system, http, paths)


async def _drive(shop: Shop, stop: asyncio.Event, answers: list[Answer]) -> None:
    """Each path, by WORKERS_PER_PATH clients in turn, until `stop`."""

    async def worker(path: HotPath) -> None:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                r = await path.send(shop.http)
                answer = Answer(
                    path.name, sent, time.monotonic(), r.status_code, r.headers.get("retry-after")
                )
            except httpx.HTTPError as exc:
                answer = Answer(path.name, sent, time.monotonic(), 0, error=repr(exc))
            answers.append(answer)
            await asyncio.sleep(PAUSE_S)

    await asyncio.gather(*(worker(p) for p in shop.paths for _ in range(WORKERS_PER_PATH)))


async def _through(shop: Shop, outage: Callable[[], None]) -> tuple[list[Answer], float, float]:
    """The answers of the load before, during and after `outage` (run in a thread: it returns
    once the database accepts connections again), when it began and when it ended."""
    answers: list[Answer] = []
    stop = asyncio.Event()
    load = asyncio.create_task(_drive(shop, stop, answers))
    try:
        await asyncio.sleep(2)
        down = time.monotonic()
        await asyncio.to_thread(outage)
        back = time.monotonic()
        deadline = back + BACK_WITHIN_S
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            served = {a.path for a in answers if a.ok and a.sent >= back}
            if time.monotonic() > back + 3 and served == {p.name for p in shop.paths}:
                break
    finally:
        stop.set()
        await load
    return answers, down, back


def _problems(shop: Shop, answers: list[Answer], down: float, back: float) -> list[str]:
    """What went wrong, all of it (empty when all is well)."""
    problems: list[str] = []
    before = [a for a in answers if a.done < down]
    for path in shop.paths:
        if not any(a.ok for a in before if a.path == path.name):
            problems.append(f"{path.name}: no 2xx before the outage")
        again = [a.sent - back for a in answers if a.path == path.name and a.ok and a.sent >= back]
        if not again or min(again) > BACK_WITHIN_S:
            problems.append(f"{path.name}: no 2xx within {BACK_WITHIN_S} s of the database back")
    problems += [f"failed before the outage: {a.seen_from(down)}" for a in before if not a.ok]
    problems += [
        f"not a 503 with Retry-After: {a.seen_from(down)}"
        for a in answers
        if a.status == 0 or (a.status >= 500 and not (a.status == 503 and a.retry_after))
    ]
    problems += [
        f"failed with the database back: {a.seen_from(down)}"
        for a in answers
        if a.sent >= back + GRACE_S and not a.ok
    ]
    return problems


def _check(shop: Shop, answers: list[Answer], down: float, back: float) -> None:
    problems = _problems(shop, answers, down, back)
    away = Counter(
        f"{a.path} {a.status}" for a in answers if a.done >= down and a.sent < back + GRACE_S
    )
    summary = (
        f"{len(answers)} requests; database away {back - down:.2f} s; answers meanwhile: "
        + ", ".join(f"{what} {n}" for what, n in sorted(away.items()))
    )
    print(summary)  # noqa: T201 (shown with -s)
    assert problems == [], "\n".join([summary, *problems[:40]])


async def test_a_restart_of_postgresql_answers_503_while_it_is_away_and_never_500(
    shop: Shop, private_postgres: PrivatePostgres
) -> None:
    def restart() -> None:  # as `stack.sh restart postgres`: a fast stop, then a start
        private_postgres.stop("fast")
        private_postgres.start()

    answers, down, back = await _through(shop, restart)
    _check(shop, answers, down, back)


async def test_a_killed_postmaster_answers_503_while_it_is_away_and_never_500(
    shop: Shop, private_postgres: PrivatePostgres
) -> None:
    def crash() -> None:  # kill -9, a moment down, then a start that recovers from the WAL
        private_postgres.kill()
        time.sleep(1)
        private_postgres.start()

    answers, down, back = await _through(shop, crash)
    _check(shop, answers, down, back)

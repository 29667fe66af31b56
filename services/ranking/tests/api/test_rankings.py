"""GET /rankings/top-products serves the daily job's snapshot; the job runs on demand
(admin endpoint, `python -m ranking.snapshot`) with an injectable "now"."""

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import httpx

from ranking.config import Settings
from ranking.main import create_app
from shop_contracts import Envelope, OrderPaid
from shopkit.http.auth import mint
from shopkit.testing import eventually, running_server, temp_database, unique

KST = timezone(timedelta(hours=9))
AS_OF = datetime(2025, 3, 10, 0, 5, tzinfo=KST)  # the job just after midnight on March 10th


def on(day: int, hour: int = 12) -> datetime:
    return datetime(2025, 3, day, hour, 0, tzinfo=KST)


async def test_the_snapshot_ranks_units_of_the_last_3_completed_days(
    worker: Any,
    client: httpx.AsyncClient,
    admin: dict[str, str],
    paid: Callable[..., OrderPaid],
    publish_paid: Callable[..., Awaitable[list[Envelope]]],
    sold: Callable[[list[int]], Awaitable[dict[tuple[date, int], int]]],
    new_products: Callable[[int], list[int]],
    process_env: dict[str, str],
) -> None:
    p1, p2, p3, p4, p5, p6, old, older, today = products = new_products(9)
    await publish_paid(
        paid(on(10, 0), [(today, 100)]),  # today: not a completed day
        paid(on(9), [(p1, 5), (p2, 3), (p3, 2)], name="new name", price=1_200),
        paid(on(9, 23), [(p3, 1)]),
        paid(on(8), [(p1, 1)], name="old name", price=1_000),
        paid(on(8), [(p4, 4), (p5, 6)]),
        paid(on(7, 0), [(p2, 3), (p6, 4)]),  # 00:00 on the 7th: the first day counted
        paid(on(6, 23), [(old, 50)]),  # sold only 4 days ago
        paid(on(5), [(older, 60)]),
    )
    expected_sold = {
        (date(2025, 3, 10), today): 100,
        (date(2025, 3, 9), p1): 5,
        (date(2025, 3, 9), p2): 3,
        (date(2025, 3, 9), p3): 3,
        (date(2025, 3, 8), p1): 1,
        (date(2025, 3, 8), p4): 4,
        (date(2025, 3, 8), p5): 6,
        (date(2025, 3, 7), p2): 3,
        (date(2025, 3, 7), p6): 4,
        (date(2025, 3, 6), old): 50,
        (date(2025, 3, 5), older): 60,
    }

    async def all_counted() -> bool:
        return await sold(products) == expected_sold

    await eventually(all_counted, timeout_s=90)

    r = await client.post("/rankings/snapshot", json={"as_of": AS_OF.isoformat()}, headers=admin)
    assert r.status_code == 201
    served = (await client.get("/rankings/top-products")).json()
    assert served == r.json()
    assert served["window_days"] == 3
    assert datetime.fromisoformat(served["as_of"]) == AS_OF
    # 6 units each for p1, p2, p5 (ties by product id), then 4 each for p4 and p6; p3 is 6th
    assert [(i["rank"], i["product_id"], i["sold_quantity"]) for i in served["items"]] == [
        (1, p1, 6),
        (2, p2, 6),
        (3, p5, 6),
        (4, p4, 4),
        (5, p6, 4),
    ]
    first = served["items"][0]
    assert (first["name"], first["price"]) == ("new name", 1_200)  # the latest sale's

    # the CLI runs the same job: `python -m ranking.snapshot --as-of …`
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ranking.snapshot",
        "--as-of",
        AS_OF.isoformat(),
        env=process_env,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await cli.communicate()
    assert cli.returncode == 0
    assert json.loads(out)["items"] == served["items"]


async def test_the_snapshot_needs_an_admin(client: httpx.AsyncClient, settings: Settings) -> None:
    assert (await client.post("/rankings/snapshot")).status_code == 401
    user = {"Authorization": f"Bearer {mint(settings.jwt_secret, '7', 'user')}"}
    r = await client.post("/rankings/snapshot", headers=user)
    assert r.status_code == 403
    assert r.json()["code"] == "FORBIDDEN"


async def test_as_of_without_offset_is_rejected(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    r = await client.post(
        "/rankings/snapshot", json={"as_of": "2025-03-10T00:05:00"}, headers=admin
    )
    assert r.status_code == 422
    assert r.json()["code"] == "VALIDATION_ERROR"


async def test_before_the_first_snapshot_the_ranking_is_empty() -> None:
    async with temp_database("ranking_empty") as url:
        settings = Settings(database_url=url, kafka_topic_prefix=unique("t.ranking.") + ".")
        async with running_server(create_app(settings)) as base_url:
            async with httpx.AsyncClient(base_url=base_url) as client:
                r = await client.get("/rankings/top-products")
    assert r.status_code == 200
    assert r.json() == {"window_days": 3, "as_of": None, "items": []}


async def test_an_admin_snapshot_without_as_of_is_as_of_now(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    before = datetime.now(UTC)
    r = await client.post("/rankings/snapshot", headers=admin)
    assert r.status_code == 201
    assert datetime.fromisoformat(r.json()["as_of"]) >= before


async def test_a_new_snapshot_replaces_the_answer_rendered_for_the_last(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    for as_of in (datetime(2031, 1, 2, 0, 5, tzinfo=KST), datetime(2031, 1, 3, 0, 5, tzinfo=KST)):
        r = await client.post(
            "/rankings/snapshot", json={"as_of": as_of.isoformat()}, headers=admin
        )
        assert r.status_code == 201
        for _ in range(2):  # the second read is the first's rendered answer
            served = (await client.get("/rankings/top-products")).json()
            assert datetime.fromisoformat(served["as_of"]) == as_of

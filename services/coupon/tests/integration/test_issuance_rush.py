"""First come, first served under a rush, over real HTTP against PostgreSQL and Redis."""

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from coupon.adapters.gate import IssuanceGate
from coupon.config import Settings
from coupon.main import create_app
from shopkit.testing import eventually, running_server

TOTAL = 1_000
DISTINCT_USERS = 8_000
REPEATS = 2_000


def rush_of_users() -> list[int]:
    """8,000 distinct users and 2,000 second tries by some of them, in random order."""
    users = random.sample(range(1, 2**62), DISTINCT_USERS)
    requests = users + random.choices(users, k=REPEATS)
    random.shuffle(requests)
    return requests


@dataclass(frozen=True)
class Sale:
    """A coupon of TOTAL copies, and a rush of users (`rush_of_users`) asking for one each."""

    coupon_id: int
    users: list[int]

    @property
    def path(self) -> str:
        return f"/coupons/{self.coupon_id}/issue"

    @property
    def requests(self) -> list[tuple[str, dict[str, Any]]]:
        return [(self.path, {"user_id": u}) for u in self.users]


@pytest.fixture
async def sale(new_coupon: Callable[..., Any]) -> Sale:
    coupon = await new_coupon(total_quantity=TOTAL)
    return Sale(coupon["id"], rush_of_users())


async def holders(db: asyncpg.Connection, coupon_id: int) -> list[int]:
    rows = await db.fetch("SELECT user_id FROM user_coupons WHERE coupon_id = $1", coupon_id)
    return [r["user_id"] for r in rows]


async def assert_exactly_the_total_was_issued(
    sale: Sale, answers: list[Any], db: asyncpg.Connection, gate: IssuanceGate
) -> None:
    coupon_id, users = sale.coupon_id, sale.users
    outcomes = Counter((a.status, a.code) for a in answers)
    assert len(answers) == len(users)
    assert outcomes[(201, None)] == TOTAL, outcomes
    assert set(outcomes) <= {
        (201, None),
        (409, "COUPON_SOLD_OUT"),
        (409, "COUPON_ALREADY_ISSUED"),
    }, outcomes
    winners = [user for user, a in zip(users, answers, strict=True) if a.status == 201]
    assert len(set(winners)) == TOTAL  # nobody got it twice
    in_db = await holders(db, coupon_id)
    assert len(in_db) == TOTAL
    assert set(in_db) == set(winners)
    assert await db.fetchval("SELECT issued_quantity FROM coupons WHERE id = $1", coupon_id) == (
        TOTAL
    )
    # a user's repeat was turned away as ALREADY_ISSUED only if they do hold the coupon
    turned_away = {
        user for user, a in zip(users, answers, strict=True) if a.code == "COUPON_ALREADY_ISSUED"
    }
    assert turned_away <= set(in_db)
    # Redis and PostgreSQL agree afterwards
    assert await gate.state(coupon_id) == ({"total": TOTAL, "count": TOTAL}, set(in_db))


async def test_a_rush_of_10000_requests_issues_exactly_1000(
    base_url: str, sale: Sale, rush: Callable[..., Any], db: asyncpg.Connection, gate: IssuanceGate
) -> None:
    answers = await rush([base_url], connections=500).post_all(sale.requests)
    await assert_exactly_the_total_was_issued(sale, answers, db, gate)


@pytest.fixture
async def second_instance(settings: Settings) -> AsyncIterator[str]:
    """Another replica of the service on the same database and Redis."""
    replica = settings.model_copy(update={"run_workers": False, "run_migrations": False})
    async with running_server(create_app(replica)) as url:
        yield url


async def test_a_rush_with_redis_flushed_twice_midway_still_issues_exactly_1000(
    base_url: str,
    second_instance: str,
    sale: Sale,
    rush: Callable[..., Any],
    db: asyncpg.Connection,
    gate: IssuanceGate,
) -> None:
    crowd = rush([base_url, second_instance], connections=500)
    flushed_at: list[int] = []

    async def flush() -> None:
        await gate.forget(sale.coupon_id)  # what a FLUSHALL or a restart does to this coupon
        flushed_at.append(len(await holders(db, sale.coupon_id)))

    async def flush_twice() -> None:
        await crowd.milestone(250).wait()
        await flush()
        await eventually(lambda: gate.is_intact(sale.coupon_id), interval_s=0.01)  # rebuilt
        await crowd.milestone(crowd.answered + 20).wait()
        await flush()

    answers, _ = await asyncio.gather(crowd.post_all(sale.requests), flush_twice())
    # both flushes hit while the coupon was still being handed out
    assert len(flushed_at) == 2
    assert all(0 < issued < TOTAL for issued in flushed_at), flushed_at
    await assert_exactly_the_total_was_issued(sale, answers, db, gate)


@pytest.fixture
async def failing_inserts(db: asyncpg.Connection) -> AsyncIterator[Callable[..., Any]]:
    """A real failure inside PostgreSQL: a trigger that rejects some users' copies."""
    await db.execute(
        """CREATE OR REPLACE FUNCTION test_fail_issuance() RETURNS trigger AS $$
        BEGIN RAISE EXCEPTION 'injected failure for user %', NEW.user_id; END
        $$ LANGUAGE plpgsql"""
    )
    names: list[str] = []

    async def fail_for(coupon_id: int, user_ids: set[int]) -> None:
        name = f"test_fail_issuance_{coupon_id}"
        users = ", ".join(str(u) for u in sorted(user_ids))
        await db.execute(
            f"CREATE TRIGGER {name} BEFORE INSERT ON user_coupons FOR EACH ROW "
            f"WHEN (NEW.coupon_id = {int(coupon_id)} AND NEW.user_id IN ({users})) "
            "EXECUTE FUNCTION test_fail_issuance()"
        )
        names.append(name)

    try:
        yield fail_for
    finally:
        for name in names:
            await db.execute(f"DROP TRIGGER IF EXISTS {name} ON user_coupons")


async def test_failed_database_writes_are_taken_back_and_the_users_can_retry(
    base_url: str,
    client: httpx.AsyncClient,
    new_coupon: Callable[..., Any],
    rush: Callable[..., Any],
    failing_inserts: Callable[..., Any],
    db: asyncpg.Connection,
    gate: IssuanceGate,
) -> None:
    coupon = await new_coupon(total_quantity=300)
    users = random.sample(range(1, 2**62), 300)
    unlucky = set(users[::5])  # 60 users whose copy the database refuses
    await failing_inserts(coupon["id"], unlucky)
    path = f"/coupons/{coupon['id']}/issue"

    answers = await rush([base_url], connections=100).post_all(
        [(path, {"user_id": u}) for u in users]
    )
    by_user = dict(zip(users, answers, strict=True))
    assert {(a.status, a.code) for u, a in by_user.items() if u in unlucky} == {
        (503, "SERVICE_UNAVAILABLE")
    }
    lucky = [u for u in users if u not in unlucky]
    assert Counter(by_user[u].status for u in lucky) == {201: 240}
    in_db = set(await holders(db, coupon["id"]))
    assert in_db == set(lucky)
    # the unlucky are not left admitted: Redis and PostgreSQL agree
    assert await gate.state(coupon["id"]) == ({"total": 300, "count": 240}, in_db)

    await db.execute(f"DROP TRIGGER test_fail_issuance_{coupon['id']} ON user_coupons")
    retries = await asyncio.gather(*(client.post(path, json={"user_id": u}) for u in unlucky))
    assert Counter(r.status_code for r in retries) == {201: 60}
    in_db = set(await holders(db, coupon["id"]))
    assert in_db == set(users)
    assert await gate.state(coupon["id"]) == ({"total": 300, "count": 300}, in_db)


async def test_a_lost_gate_is_rebuilt_from_the_database_before_anyone_is_admitted(
    client: httpx.AsyncClient,
    new_coupon: Callable[..., Any],
    gate: IssuanceGate,
    db: asyncpg.Connection,
) -> None:
    coupon = await new_coupon(total_quantity=5)
    path = f"/coupons/{coupon['id']}/issue"
    for user in (1, 2, 3):
        assert (await client.post(path, json={"user_id": user})).status_code == 201
    await gate.forget(coupon["id"])

    again = await client.post(path, json={"user_id": 2})
    assert again.status_code == 409
    assert again.json()["code"] == "COUPON_ALREADY_ISSUED"
    assert await gate.state(coupon["id"]) == ({"total": 5, "count": 3}, {1, 2, 3})
    for user in (4, 5):
        assert (await client.post(path, json={"user_id": user})).status_code == 201
    late = await client.post(path, json={"user_id": 6})
    assert late.json()["code"] == "COUPON_SOLD_OUT"
    assert set(await holders(db, coupon["id"])) == {1, 2, 3, 4, 5}

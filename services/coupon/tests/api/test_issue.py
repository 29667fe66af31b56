"""POST /coupons/{coupon_id}/issue: every answer of API.md, and what each leaves behind."""

import socket
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from coupon.adapters.gate import IssuanceGate
from coupon.config import Settings
from coupon.main import create_app
from shopkit.testing import ActAsUser, free_port, running_server

PROBLEM = "application/problem+json"


async def holders(db: asyncpg.Connection, coupon_id: int) -> set[int]:
    rows = await db.fetch("SELECT user_id FROM user_coupons WHERE coupon_id = $1", coupon_id)
    return {r["user_id"] for r in rows}


async def issued_quantity(db: asyncpg.Connection, coupon_id: int) -> int:
    value: int = await db.fetchval("SELECT issued_quantity FROM coupons WHERE id = $1", coupon_id)
    return value


async def test_issue_gives_the_user_an_available_copy(
    client: httpx.AsyncClient,
    new_coupon: Callable[..., Any],
    gate: IssuanceGate,
    db: asyncpg.Connection,
    user_id: int,
) -> None:
    coupon = await new_coupon(valid_days=30)
    r = await client.post(f"/coupons/{coupon['id']}/issue", json={"user_id": user_id})
    assert r.status_code == 201
    issued = r.json()
    assert issued == {
        "user_coupon_id": issued["user_coupon_id"],
        "coupon_id": coupon["id"],
        "user_id": user_id,
        "status": "AVAILABLE",
        "issued_at": issued["issued_at"],
        "expires_at": issued["expires_at"],
    }
    issued_at = datetime.fromisoformat(issued["issued_at"])
    assert issued_at.utcoffset() is not None
    assert datetime.fromisoformat(issued["expires_at"]) - issued_at == timedelta(days=30)
    assert await holders(db, coupon["id"]) == {user_id}
    assert await issued_quantity(db, coupon["id"]) == 1
    meta, admitted = await gate.state(coupon["id"])
    assert meta == {"total": 100, "count": 1}
    assert admitted == {user_id}


async def test_largest_user_id_is_accepted(
    client: httpx.AsyncClient, new_coupon: Callable[..., Any]
) -> None:
    coupon = await new_coupon()
    r = await client.post(f"/coupons/{coupon['id']}/issue", json={"user_id": 2**63 - 1})
    assert r.status_code == 201
    assert r.json()["user_id"] == 2**63 - 1


async def test_second_issue_for_the_same_user_is_409_and_changes_nothing(
    client: httpx.AsyncClient,
    new_coupon: Callable[..., Any],
    gate: IssuanceGate,
    db: asyncpg.Connection,
    user_id: int,
) -> None:
    coupon = await new_coupon()
    path = f"/coupons/{coupon['id']}/issue"
    assert (await client.post(path, json={"user_id": user_id})).status_code == 201
    r = await client.post(path, json={"user_id": user_id})
    assert r.status_code == 409
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["code"] == "COUPON_ALREADY_ISSUED"
    assert await holders(db, coupon["id"]) == {user_id}
    assert await issued_quantity(db, coupon["id"]) == 1
    assert await gate.state(coupon["id"]) == ({"total": 100, "count": 1}, {user_id})


async def test_issue_past_the_total_is_409_sold_out_and_changes_nothing(
    client: httpx.AsyncClient,
    new_coupon: Callable[..., Any],
    gate: IssuanceGate,
    db: asyncpg.Connection,
) -> None:
    coupon = await new_coupon(total_quantity=2)
    path = f"/coupons/{coupon['id']}/issue"
    for user in (11, 12):
        assert (await client.post(path, json={"user_id": user})).status_code == 201
    r = await client.post(path, json={"user_id": 13})
    assert r.status_code == 409
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["code"] == "COUPON_SOLD_OUT"
    assert await holders(db, coupon["id"]) == {11, 12}
    assert await issued_quantity(db, coupon["id"]) == 2
    assert await gate.state(coupon["id"]) == ({"total": 2, "count": 2}, {11, 12})
    assert (await client.get(f"/coupons/{coupon['id']}")).json()["remaining_quantity"] == 0


async def test_issue_of_an_unknown_coupon_is_404_and_changes_nothing(
    client: httpx.AsyncClient, gate: IssuanceGate, db: asyncpg.Connection
) -> None:
    unknown = 2**62 + 5
    r = await client.post(f"/coupons/{unknown}/issue", json={"user_id": 1})
    assert r.status_code == 404
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["code"] == "COUPON_NOT_FOUND"
    assert await holders(db, unknown) == set()
    assert await gate.state(unknown) == ({}, set())


@pytest.mark.parametrize(
    "body",
    [
        {"user_id": 0},
        {"user_id": -1},
        {"user_id": 2**63},
        {"user_id": "1"},
        {"user_id": 1.0},
        {"user_id": True},
        {"user_id": None},
        {},
        {"user_id": 1, "coupon_id": 2},
        [1],
    ],
)
async def test_invalid_issue_body_is_422_and_changes_nothing(
    client: httpx.AsyncClient,
    new_coupon: Callable[..., Any],
    gate: IssuanceGate,
    db: asyncpg.Connection,
    body: object,
) -> None:
    coupon = await new_coupon()
    r = await client.post(f"/coupons/{coupon['id']}/issue", json=body)
    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["code"] == "VALIDATION_ERROR"
    assert r.json()["errors"]
    assert await holders(db, coupon["id"]) == set()
    assert await gate.state(coupon["id"]) == ({"total": 100, "count": 0}, set())


async def test_malformed_issue_json_is_422(
    client: httpx.AsyncClient, new_coupon: Callable[..., Any]
) -> None:
    coupon = await new_coupon()
    r = await client.post(
        f"/coupons/{coupon['id']}/issue",
        content=b'{"user_id": ',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422
    assert r.json()["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize("bad_id", ["0", "-1", str(2**63), "abc"])
async def test_out_of_range_coupon_id_on_issue_is_422(
    client: httpx.AsyncClient, bad_id: str
) -> None:
    r = await client.post(f"/coupons/{bad_id}/issue", json={"user_id": 1})
    assert r.status_code == 422
    assert r.json()["code"] == "VALIDATION_ERROR"


async def test_a_token_may_issue_only_to_its_own_user(
    client: httpx.AsyncClient,
    new_coupon: Callable[..., Any],
    token: Callable[..., dict[str, str]],
    admin: dict[str, str],
    db: asyncpg.Connection,
) -> None:
    coupon = await new_coupon()
    path = f"/coupons/{coupon['id']}/issue"
    r = await client.post(path, json={"user_id": 21}, headers=token("22"))
    assert r.status_code == 403
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["code"] == "FORBIDDEN"
    r = await client.post(path, json={"user_id": 21}, headers={"Authorization": "Bearer junk"})
    assert r.status_code == 401
    assert r.json()["code"] == "UNAUTHENTICATED"
    assert await holders(db, coupon["id"]) == set()
    assert (await client.post(path, json={"user_id": 21}, headers=token("21"))).status_code == 201
    assert (await client.post(path, json={"user_id": 23}, headers=admin)).status_code == 201
    assert await holders(db, coupon["id"]) == {21, 23}


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose listener never answers: connections open, commands hang (a stuck Redis)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield int(listener.getsockname()[1])


@pytest.mark.parametrize("redis", ["closed port", "silent port"])
async def test_unreachable_redis_is_a_quick_503_and_issues_nothing(
    settings: Settings,
    new_coupon: Callable[..., Any],
    db: asyncpg.Connection,
    silent_port: int,
    redis: str,
) -> None:
    coupon = await new_coupon()
    port = free_port() if redis == "closed port" else silent_port
    nowhere = settings.model_copy(
        update={
            "redis_url": f"redis://127.0.0.1:{port}/0",
            "run_workers": False,
            "run_migrations": False,
        }
    )
    async with (
        running_server(create_app(nowhere)) as url,
        httpx.AsyncClient(base_url=url, timeout=10, auth=ActAsUser(settings.jwt_secret)) as other,
    ):
        r = await other.post(f"/coupons/{coupon['id']}/issue", json={"user_id": 31})
        assert r.status_code == 503
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["code"] == "SERVICE_UNAVAILABLE"
        # Ready all the same (reads and the saga's pricing need no Redis), Redis named degraded.
        ready = await other.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"
        assert "redis" in ready.json()["degraded"]
        # what does not need Redis still works
        assert (await other.get(f"/coupons/{coupon['id']}")).status_code == 200
    assert await holders(db, coupon["id"]) == set()
    assert await issued_quantity(db, coupon["id"]) == 0

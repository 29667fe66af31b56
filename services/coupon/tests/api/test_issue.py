"""POST /coupons/{coupon_id}/issue: every answer of API.md, and what each leaves behind."""

import socket
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import httpx
import pytest

from coupon.config import Settings
from coupon.main import create_app
from shopkit.testing import ActAsUser, assert_problem, free_port, running_server

from ..conftest import Copies, CopiesOf, CouponFactory


async def test_issue_gives_the_user_an_available_copy(
    client: httpx.AsyncClient, new_coupon: CouponFactory, copies: CopiesOf, user_id: int
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
    assert await copies(coupon["id"]) == Copies(
        {user_id}, 1, ({"total": 100, "count": 1}, {user_id})
    )


async def test_largest_user_id_is_accepted(
    client: httpx.AsyncClient, new_coupon: CouponFactory
) -> None:
    coupon = await new_coupon()
    r = await client.post(f"/coupons/{coupon['id']}/issue", json={"user_id": 2**63 - 1})
    assert r.status_code == 201
    assert r.json()["user_id"] == 2**63 - 1


async def test_second_issue_for_the_same_user_is_409_and_changes_nothing(
    client: httpx.AsyncClient, new_coupon: CouponFactory, copies: CopiesOf, user_id: int
) -> None:
    coupon = await new_coupon()
    path = f"/coupons/{coupon['id']}/issue"
    assert (await client.post(path, json={"user_id": user_id})).status_code == 201
    r = await client.post(path, json={"user_id": user_id})
    assert_problem(r, 409, "COUPON_ALREADY_ISSUED")
    assert await copies(coupon["id"]) == Copies(
        {user_id}, 1, ({"total": 100, "count": 1}, {user_id})
    )


async def test_issue_past_the_total_is_409_sold_out_and_changes_nothing(
    client: httpx.AsyncClient, new_coupon: CouponFactory, copies: CopiesOf
) -> None:
    coupon = await new_coupon(total_quantity=2)
    path = f"/coupons/{coupon['id']}/issue"
    for user in (11, 12):
        assert (await client.post(path, json={"user_id": user})).status_code == 201
    r = await client.post(path, json={"user_id": 13})
    assert_problem(r, 409, "COUPON_SOLD_OUT")
    assert await copies(coupon["id"]) == Copies({11, 12}, 2, ({"total": 2, "count": 2}, {11, 12}))
    assert (await client.get(f"/coupons/{coupon['id']}")).json()["remaining_quantity"] == 0


async def test_issue_of_an_unknown_coupon_is_404_and_changes_nothing(
    client: httpx.AsyncClient, copies: CopiesOf
) -> None:
    unknown = 2**62 + 5
    r = await client.post(f"/coupons/{unknown}/issue", json={"user_id": 1})
    assert_problem(r, 404, "COUPON_NOT_FOUND")
    assert await copies(unknown) == Copies(set(), None, ({}, set()))


@pytest.mark.parametrize(
    "body",
    [
        {"user_id": 0},
        {"user_id": -1},
        {"user_id": 2**63},
        {"user_id": "1"},
        {"user_id": 1.5},
        {"user_id": True},
        {"user_id": None},
        {},
        {"user_id": 1, "coupon_id": 2},
        [1],
    ],
)
async def test_invalid_issue_body_is_422_and_changes_nothing(
    client: httpx.AsyncClient, new_coupon: CouponFactory, copies: CopiesOf, body: object
) -> None:
    coupon = await new_coupon()
    r = await client.post(f"/coupons/{coupon['id']}/issue", json=body)
    assert_problem(r, 422, "VALIDATION_ERROR")
    assert r.json()["errors"]
    assert await copies(coupon["id"]) == Copies(set(), 0, ({"total": 100, "count": 0}, set()))


async def test_malformed_issue_json_is_422(
    client: httpx.AsyncClient, new_coupon: CouponFactory
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
    new_coupon: CouponFactory,
    token: Callable[..., dict[str, str]],
    admin: dict[str, str],
    copies: CopiesOf,
) -> None:
    coupon = await new_coupon()
    path = f"/coupons/{coupon['id']}/issue"
    r = await client.post(path, json={"user_id": 21}, headers=token("22"))
    assert_problem(r, 403, "FORBIDDEN")
    r = await client.post(path, json={"user_id": 21}, headers={"Authorization": "Bearer junk"})
    assert r.status_code == 401
    assert r.json()["code"] == "UNAUTHENTICATED"
    assert (await copies(coupon["id"])).holders == set()
    assert (await client.post(path, json={"user_id": 21}, headers=token("21"))).status_code == 201
    assert (await client.post(path, json={"user_id": 23}, headers=admin)).status_code == 201
    assert (await copies(coupon["id"])).holders == {21, 23}


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
    new_coupon: CouponFactory,
    copies: CopiesOf,
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
        assert_problem(r, 503, "SERVICE_UNAVAILABLE")
        assert r.headers["Retry-After"] == "1"  # every 503 says when to try again
        # Ready all the same (reads and the saga's pricing need no Redis), Redis named degraded.
        ready = await other.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"
        assert "redis" in ready.json()["degraded"]
        # what does not need Redis still works
        assert (await other.get(f"/coupons/{coupon['id']}")).status_code == 200
    left = await copies(coupon["id"])
    assert (left.holders, left.issued_quantity) == (set(), 0)

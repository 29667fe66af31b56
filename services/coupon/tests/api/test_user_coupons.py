"""GET /users/{user_id}/coupons: the user's coupons with their status."""

import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pytest

PROBLEM = "application/problem+json"


async def test_a_users_coupons_show_available_used_and_expired(
    client: httpx.AsyncClient,
    new_coupon: Callable[..., Any],
    db: asyncpg.Connection,
    user_id: int,
) -> None:
    first = await new_coupon(name="3,000 off", discount_type="FIXED", discount_value=3_000)
    second = await new_coupon(name="5% off", discount_value=5, min_order_amount=10_000)
    third = await new_coupon(name="old one", valid_days=1)
    issued = {}
    for coupon in (first, second, third):
        r = await client.post(f"/coupons/{coupon['id']}/issue", json={"user_id": user_id})
        issued[coupon["id"]] = r.json()["user_coupon_id"]
    order_id = uuid.uuid4()
    await db.execute(
        "UPDATE user_coupons SET used_order_id = $1, used_at = now() WHERE id = $2",
        order_id,
        issued[second["id"]],
    )
    await db.execute(
        "UPDATE user_coupons SET issued_at = now() - interval '2 days',"
        " expires_at = now() - interval '1 day' WHERE id = $1",
        issued[third["id"]],
    )

    r = await client.get(f"/users/{user_id}/coupons")
    assert r.status_code == 200
    items = r.json()["items"]
    assert [(i["coupon_id"], i["status"]) for i in items] == [
        (third["id"], "EXPIRED"),
        (second["id"], "USED"),
        (first["id"], "AVAILABLE"),
    ]
    by_coupon = {i["coupon_id"]: i for i in items}
    assert by_coupon[first["id"]] == {
        "user_coupon_id": issued[first["id"]],
        "coupon_id": first["id"],
        "name": "3,000 off",
        "discount_type": "FIXED",
        "discount_value": 3_000,
        "min_order_amount": 0,
        "status": "AVAILABLE",
        "issued_at": by_coupon[first["id"]]["issued_at"],
        "expires_at": by_coupon[first["id"]]["expires_at"],
        "used_order_id": None,
    }
    assert by_coupon[second["id"]]["used_order_id"] == str(order_id)
    assert by_coupon[second["id"]]["min_order_amount"] == 10_000


async def test_a_user_without_coupons_has_an_empty_list(client: httpx.AsyncClient) -> None:
    r = await client.get(f"/users/{2**63 - 2}/coupons")
    assert r.status_code == 200
    assert r.json() == {"items": []}


@pytest.mark.parametrize("bad_id", ["0", "-1", str(2**63), "abc", "1.5"])
async def test_out_of_range_user_id_is_422(client: httpx.AsyncClient, bad_id: str) -> None:
    r = await client.get(f"/users/{bad_id}/coupons")
    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["code"] == "VALIDATION_ERROR"


async def test_a_token_may_read_only_its_own_users_coupons(
    client: httpx.AsyncClient,
    token: Callable[..., dict[str, str]],
    admin: dict[str, str],
) -> None:
    r = await client.get("/users/5/coupons", headers=token("6"))
    assert r.status_code == 403
    assert r.json()["code"] == "FORBIDDEN"
    assert (await client.get("/users/5/coupons", headers=token("5"))).status_code == 200
    assert (await client.get("/users/5/coupons", headers=admin)).status_code == 200

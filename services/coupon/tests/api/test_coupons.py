"""POST /coupons (admin) and GET /coupons/{coupon_id}."""

from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pytest

from shopkit.http.auth import mint
from shopkit.testing import assert_problem

VALID: dict[str, Any] = {
    "name": "오픈 기념 10% 할인",
    "discount_type": "PERCENT",
    "discount_value": 10,
    "total_quantity": 1_000,
    "valid_days": 30,
    "min_order_amount": 20_000,
}


async def coupon_count(db: asyncpg.Connection) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM coupons")
    return count


async def test_admin_creates_a_coupon_and_anyone_reads_it(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    r = await client.post("/coupons", json=VALID, headers=admin)
    assert r.status_code == 201
    created = r.json()
    assert created == {
        "id": created["id"],
        "name": "오픈 기념 10% 할인",
        "discount_type": "PERCENT",
        "discount_value": 10,
        "total_quantity": 1_000,
        "issued_quantity": 0,
        "remaining_quantity": 1_000,
        "min_order_amount": 20_000,
        "valid_days": 30,
    }
    r = await client.get(f"/coupons/{created['id']}")
    assert r.status_code == 200
    assert r.json() == created


async def test_a_fixed_coupon_may_take_more_than_100_won(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    body = VALID | {"discount_type": "FIXED", "discount_value": 5_000, "min_order_amount": 0}
    r = await client.post("/coupons", json=body, headers=admin)
    assert r.status_code == 201
    assert r.json()["discount_value"] == 5_000


async def test_issued_and_remaining_quantities_follow_issuance(
    client: httpx.AsyncClient, new_coupon: Callable[..., Any]
) -> None:
    coupon = await new_coupon(total_quantity=3)
    for user in (1, 2):
        assert (
            await client.post(f"/coupons/{coupon['id']}/issue", json={"user_id": user})
        ).status_code == 201
    got = (await client.get(f"/coupons/{coupon['id']}")).json()
    assert (got["issued_quantity"], got["remaining_quantity"]) == (2, 1)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer not-a-jwt"}, 401),
        ({"Authorization": "Basic YWRtaW46YWRtaW4="}, 401),
        ({"Authorization": "Bearer"}, 401),
    ],
)
async def test_create_without_a_valid_token_is_401_and_creates_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection, headers: dict[str, str], status: int
) -> None:
    before = await coupon_count(db)
    r = await client.post("/coupons", json=VALID, headers=headers)
    assert_problem(r, status, "UNAUTHENTICATED")
    assert await coupon_count(db) == before


async def test_create_with_an_expired_or_foreign_token_is_401(
    client: httpx.AsyncClient, db: asyncpg.Connection, token: Callable[..., dict[str, str]]
) -> None:
    before = await coupon_count(db)
    expired = token("admin-1", "admin", ttl_s=-60)
    foreign = {
        "Authorization": f"Bearer {mint('another-secret-of-32-bytes-or-more!', '1', 'admin')}"
    }
    for headers in (expired, foreign):
        r = await client.post("/coupons", json=VALID, headers=headers)
        assert r.status_code == 401
        assert r.json()["code"] == "UNAUTHENTICATED"
    assert await coupon_count(db) == before


async def test_create_as_a_user_is_403_and_creates_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection, token: Callable[..., dict[str, str]]
) -> None:
    before = await coupon_count(db)
    r = await client.post("/coupons", json=VALID, headers=token("42"))
    assert_problem(r, 403, "FORBIDDEN")
    assert await coupon_count(db) == before


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"discount_type": "PERCENT", "discount_value": 0}, "discount_value"),
        ({"discount_type": "PERCENT", "discount_value": 101}, "discount_value"),
        ({"discount_type": "FIXED", "discount_value": 0}, "discount_value"),
        ({"discount_type": "FIXED", "discount_value": -1_000}, "discount_value"),
        ({"discount_type": "HALF"}, "discount_type"),
        ({"discount_type": "percent"}, "discount_type"),
        ({"discount_value": 10.5}, "discount_value"),
        ({"discount_value": "10"}, "discount_value"),
        ({"total_quantity": 0}, "total_quantity"),
        ({"total_quantity": -5}, "total_quantity"),
        ({"total_quantity": 2**63}, "total_quantity"),
        ({"total_quantity": True}, "total_quantity"),
        ({"valid_days": 0}, "valid_days"),
        ({"valid_days": 1.5}, "valid_days"),
        ({"valid_days": 10**6}, "valid_days"),
        ({"min_order_amount": -1}, "min_order_amount"),
        ({"min_order_amount": None}, "min_order_amount"),
        ({"min_order_amount": 2**63}, "min_order_amount"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": 7}, "name"),
        ({"issued_quantity": 5}, "issued_quantity"),
    ],
)
async def test_invalid_coupon_is_422_and_creates_nothing(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    db: asyncpg.Connection,
    change: dict[str, Any],
    field: str,
) -> None:
    before = await coupon_count(db)
    r = await client.post("/coupons", json=VALID | change, headers=admin)
    problem = assert_problem(r, 422, "VALIDATION_ERROR")
    assert field in {e["loc"][-1] for e in problem["errors"]}
    assert await coupon_count(db) == before


@pytest.mark.parametrize("missing", sorted(VALID))
async def test_coupon_missing_a_field_is_422(
    client: httpx.AsyncClient, admin: dict[str, str], missing: str
) -> None:
    body = {k: v for k, v in VALID.items() if k != missing}
    r = await client.post("/coupons", json=body, headers=admin)
    assert r.status_code == 422
    assert missing in {e["loc"][-1] for e in r.json()["errors"]}


@pytest.mark.parametrize("content", [b"{not json", b"[]", b"", b"null"])
async def test_malformed_coupon_body_is_422(
    client: httpx.AsyncClient, admin: dict[str, str], db: asyncpg.Connection, content: bytes
) -> None:
    before = await coupon_count(db)
    r = await client.post(
        "/coupons", content=content, headers=admin | {"content-type": "application/json"}
    )
    assert r.status_code == 422
    assert r.json()["code"] == "VALIDATION_ERROR"
    assert await coupon_count(db) == before


async def test_unknown_coupon_is_404(client: httpx.AsyncClient) -> None:
    r = await client.get(f"/coupons/{2**63 - 1}")
    assert_problem(r, 404, "COUPON_NOT_FOUND")


@pytest.mark.parametrize("bad_id", ["0", "-1", str(2**63), "abc", "1.5"])
async def test_out_of_range_coupon_id_is_422(client: httpx.AsyncClient, bad_id: str) -> None:
    r = await client.get(f"/coupons/{bad_id}")
    assert r.status_code == 422
    assert r.json()["code"] == "VALIDATION_ERROR"

"""Gate reconciliation: an admission a killed process left behind (admitted in Redis, never
written to PostgreSQL) is taken back, so the user can have their copy and no copy is lost; an
issuance still in flight is left alone."""

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx

from coupon.adapters.gate import Admission, IssuanceGate
from coupon.config import Settings
from coupon.reconcile import run as reconcile_cli
from coupon.service.reconciling import reconcile
from shopkit.ops.runtime import Runtime


async def _issue(client: httpx.AsyncClient, coupon_id: int, user_id: int) -> httpx.Response:
    return await client.post(f"/coupons/{coupon_id}/issue", json={"user_id": user_id})


async def test_an_admission_no_copy_backs_is_taken_back_and_the_copy_issued_after_all(
    client: httpx.AsyncClient,
    new_coupon: Callable[..., Any],
    gate: IssuanceGate,
    runtime: Runtime,
    db: asyncpg.Connection,
    user_id: int,
) -> None:
    coupon = await new_coupon(total_quantity=2)
    crashed, other = user_id, user_id + 1
    # The process admitted the user and was killed before the database commit.
    assert await gate.admit(coupon["id"], crashed) is Admission.ADMITTED
    assert (await _issue(client, coupon["id"], crashed)).json()["code"] == "COUPON_ALREADY_ISSUED"
    assert (await _issue(client, coupon["id"], other)).status_code == 201
    # The gate thinks the coupon is sold out; the database has one copy left.
    assert (await _issue(client, coupon["id"], user_id + 2)).json()["code"] == "COUPON_SOLD_OUT"

    repaired = await reconcile(runtime.unit_of_work, gate, [coupon["id"]], grace_s=0.2)

    assert repaired == {coupon["id"]: [crashed]}
    assert (await _issue(client, coupon["id"], crashed)).status_code == 201
    holders = await db.fetch("SELECT user_id FROM user_coupons WHERE coupon_id = $1", coupon["id"])
    assert {r["user_id"] for r in holders} == {crashed, other}
    assert await gate.state(coupon["id"]) == ({"total": 2, "count": 2}, {crashed, other})
    assert await reconcile(runtime.unit_of_work, gate, [coupon["id"]], grace_s=0.1) == {}


async def test_an_issuance_in_flight_is_left_alone(
    new_coupon: Callable[..., Any],
    gate: IssuanceGate,
    runtime: Runtime,
    db: asyncpg.Connection,
    user_id: int,
) -> None:
    coupon = await new_coupon(total_quantity=5)
    assert await gate.admit(coupon["id"], user_id) is Admission.ADMITTED
    reconciling = asyncio.create_task(
        reconcile(runtime.unit_of_work, gate, [coupon["id"]], grace_s=2.0)
    )
    await asyncio.sleep(0.3)
    # ... and its write commits within the grace period
    await db.execute(
        "WITH copy AS (UPDATE coupons SET issued_quantity = issued_quantity + 1 WHERE id = $1)"
        " INSERT INTO user_coupons (coupon_id, user_id, issued_at, expires_at)"
        " VALUES ($1, $2, now(), now() + interval '7 days')",
        coupon["id"],
        user_id,
    )
    assert await reconciling == {}
    assert user_id in (await gate.state(coupon["id"]))[1]


async def test_on_demand_for_every_open_coupon(
    new_coupon: Callable[..., Any], gate: IssuanceGate, settings: Settings, user_id: int
) -> None:
    coupons = [await new_coupon(total_quantity=3) for _ in range(2)]
    for coupon in coupons:
        assert await gate.admit(coupon["id"], user_id) is Admission.ADMITTED
    repaired = await reconcile_cli(["--grace-s", "0.1"], settings)
    assert {c["id"]: repaired.get(c["id"]) for c in coupons} == {
        c["id"]: [user_id] for c in coupons
    }
    for coupon in coupons:
        assert user_id not in (await gate.state(coupon["id"]))[1]

"""Gate reconciliation: an admission a killed process left behind (admitted in Redis, never
written to PostgreSQL) is taken back, so the user can have their copy and no copy is lost; an
issuance still in flight is left alone."""

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import httpx
import pytest

from coupon.adapters.gate import Admission, IssuanceGate
from coupon.config import Settings
from coupon.reconcile import run as reconcile_cli
from coupon.service.reconciling import reconcile
from shopkit.ops.runtime import Runtime

from ..conftest import Copies, CopiesOf, CouponFactory

Admitted = Callable[..., Awaitable[int]]
Reconcile = Callable[..., Awaitable[dict[int, list[int]]]]


@pytest.fixture
def admitted(new_coupon: CouponFactory, gate: IssuanceGate) -> Admitted:
    """`await admitted(user_id, **coupon)`: a new coupon whose gate has admitted the user, as an
    issuance does before its database write (a process killed then leaves it so); its id."""

    async def make(user_id: int, **coupon: int) -> int:
        coupon_id = int((await new_coupon(**coupon))["id"])
        assert await gate.admit(coupon_id, user_id) is Admission.ADMITTED
        return coupon_id

    return make


@pytest.fixture
def reconciled(runtime: Runtime, gate: IssuanceGate) -> Reconcile:
    """`await reconciled(coupon_id, grace_s=…)`: one reconciliation of that coupon's gate, as the
    service runs it; the admissions it took back, by coupon."""

    async def run(coupon_id: int, *, grace_s: float) -> dict[int, list[int]]:
        return await reconcile(runtime.unit_of_work, gate, [coupon_id], grace_s=grace_s)

    return run


async def _issue(client: httpx.AsyncClient, coupon_id: int, user_id: int) -> httpx.Response:
    return await client.post(f"/coupons/{coupon_id}/issue", json={"user_id": user_id})


async def test_an_admission_no_copy_backs_is_taken_back_and_the_copy_issued_after_all(
    client: httpx.AsyncClient,
    admitted: Admitted,
    reconciled: Reconcile,
    copies: CopiesOf,
    user_id: int,
) -> None:
    crashed, other = user_id, user_id + 1
    # The process admitted the user and was killed before the database commit.
    coupon_id = await admitted(crashed, total_quantity=2)
    assert (await _issue(client, coupon_id, crashed)).json()["code"] == "COUPON_ALREADY_ISSUED"
    assert (await _issue(client, coupon_id, other)).status_code == 201
    # The gate thinks the coupon is sold out; the database has one copy left.
    assert (await _issue(client, coupon_id, user_id + 2)).json()["code"] == "COUPON_SOLD_OUT"

    assert await reconciled(coupon_id, grace_s=0.2) == {coupon_id: [crashed]}

    assert (await _issue(client, coupon_id, crashed)).status_code == 201
    both = {crashed, other}
    assert await copies(coupon_id) == Copies(both, 2, ({"total": 2, "count": 2}, both))
    assert await reconciled(coupon_id, grace_s=0.1) == {}


async def test_an_issuance_in_flight_is_left_alone(
    admitted: Admitted,
    reconciled: Reconcile,
    gate: IssuanceGate,
    db: asyncpg.Connection,
    user_id: int,
) -> None:
    coupon_id = await admitted(user_id, total_quantity=5)
    reconciling = asyncio.create_task(reconciled(coupon_id, grace_s=2.0))
    await asyncio.sleep(0.3)
    # ... and its write commits within the grace period
    await db.execute(
        "WITH copy AS (UPDATE coupons SET issued_quantity = issued_quantity + 1 WHERE id = $1)"
        " INSERT INTO user_coupons (coupon_id, user_id, issued_at, expires_at)"
        " VALUES ($1, $2, now(), now() + interval '7 days')",
        coupon_id,
        user_id,
    )
    assert await reconciling == {}
    assert user_id in (await gate.state(coupon_id))[1]


async def test_on_demand_for_every_open_coupon(
    admitted: Admitted, gate: IssuanceGate, settings: Settings, user_id: int
) -> None:
    coupons = [await admitted(user_id, total_quantity=3) for _ in range(2)]
    repaired = await reconcile_cli(["--grace-s", "0.1"], settings)
    assert {c: repaired.get(c) for c in coupons} == {c: [user_id] for c in coupons}
    for coupon_id in coupons:
        assert user_id not in (await gate.state(coupon_id))[1]

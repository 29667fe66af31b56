"""A user's coupons are that user's: another user's token can neither take a coupon in their name
(which would drain a 선착순 coupon through user ids 1..N) nor list theirs; without a token it is
401; a refused issue takes nothing, not even the user's place at the Redis gate."""

from collections.abc import Callable
from typing import Any

import httpx

PROBLEM = "application/problem+json"


async def test_another_users_token_can_neither_issue_for_nor_list_a_user(
    client: httpx.AsyncClient,
    new_coupon: Callable[..., Any],
    token: Callable[..., dict[str, str]],
    user_id: int,
) -> None:
    coupon = await new_coupon(total_quantity=5)
    victim, attacker = user_id, user_id + 1
    as_attacker = token(str(attacker))

    taken = await client.post(
        f"/coupons/{coupon['id']}/issue", json={"user_id": victim}, headers=as_attacker
    )
    listed = await client.get(f"/users/{victim}/coupons", headers=as_attacker)
    for r in (taken, listed):
        assert r.status_code == 403, r.text
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["code"] == "FORBIDDEN"

    after = (await client.get(f"/coupons/{coupon['id']}")).json()
    assert after["issued_quantity"] == 0
    # The victim's own request is still the first of theirs: the gate never admitted the forgery.
    own = await client.post(f"/coupons/{coupon['id']}/issue", json={"user_id": victim})
    assert own.status_code == 201, own.text
    assert [
        c["coupon_id"] for c in (await client.get(f"/users/{victim}/coupons")).json()["items"]
    ] == [coupon["id"]]


async def test_issuing_or_listing_without_a_token_is_401(
    client: httpx.AsyncClient, new_coupon: Callable[..., Any], user_id: int
) -> None:
    coupon = await new_coupon(total_quantity=5)
    async with httpx.AsyncClient(base_url=str(client.base_url)) as anonymous:
        issued = await anonymous.post(f"/coupons/{coupon['id']}/issue", json={"user_id": user_id})
        listed = await anonymous.get(f"/users/{user_id}/coupons")
    for r in (issued, listed):
        assert r.status_code == 401, r.text
        assert r.json()["code"] == "UNAUTHENTICATED"
    assert (await client.get(f"/coupons/{coupon['id']}")).json()["issued_quantity"] == 0


async def test_an_admin_may_issue_for_a_user(
    client: httpx.AsyncClient,
    new_coupon: Callable[..., Any],
    admin: dict[str, str],
    user_id: int,
) -> None:
    coupon = await new_coupon(total_quantity=5)
    r = await client.post(
        f"/coupons/{coupon['id']}/issue", json={"user_id": user_id}, headers=admin
    )
    assert r.status_code == 201, r.text
    assert r.json()["user_id"] == user_id

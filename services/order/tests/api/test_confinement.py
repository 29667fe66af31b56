"""A user's orders are that user's: another user's token can neither place an order in their
name (spending their points and coupons) nor read their orders, by list or by id; without a token
it is 401; a refused order is never stored and starts no saga."""

import asyncpg
import httpx

from order.config import Settings
from shopkit.testing import bearer

PROBLEM = "application/problem+json"


def _order(user_id: int) -> dict[str, object]:
    return {"user_id": user_id, "items": [{"product_id": 10, "quantity": 1}]}


async def _orders_of(db: asyncpg.Connection, user_id: int) -> int:
    return int(await db.fetchval("SELECT count(*) FROM orders WHERE user_id = $1", user_id))


async def test_another_users_token_can_neither_order_as_nor_read_a_user(
    client: httpx.AsyncClient, settings: Settings, db: asyncpg.Connection, user_id: int
) -> None:
    owner, other = user_id, user_id + 1
    placed = (await client.post("/orders", json=_order(owner))).json()
    as_other = bearer(settings.jwt_secret, other)

    for r in (
        await client.post("/orders", json=_order(owner), headers=as_other),
        await client.post(
            "/orders", json=_order(owner), headers={**as_other, "Idempotency-Key": "steal-1"}
        ),
        await client.get(f"/orders/{placed['order_id']}", headers=as_other),
        await client.get(f"/users/{owner}/orders", headers=as_other),
    ):
        assert r.status_code == 403, r.text
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["code"] == "FORBIDDEN"
    assert await _orders_of(db, owner) == 1

    # The owner reads their own order by id with their own token.
    own = await client.get(
        f"/orders/{placed['order_id']}", headers=bearer(settings.jwt_secret, owner)
    )
    assert own.status_code == 200
    assert own.json()["order_id"] == placed["order_id"]


async def test_without_a_token_it_is_401_and_nothing_is_stored(
    client: httpx.AsyncClient, db: asyncpg.Connection, user_id: int
) -> None:
    placed = (await client.post("/orders", json=_order(user_id))).json()
    async with httpx.AsyncClient(base_url=str(client.base_url)) as anonymous:
        for r in (
            await anonymous.post("/orders", json=_order(user_id)),
            await anonymous.get(f"/orders/{placed['order_id']}"),
            await anonymous.get(f"/users/{user_id}/orders"),
        ):
            assert r.status_code == 401, r.text
            assert r.json()["code"] == "UNAUTHENTICATED"
    assert await _orders_of(db, user_id) == 1

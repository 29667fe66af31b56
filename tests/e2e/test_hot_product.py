"""1,000 users race for a product with 100 in stock, through the whole saga."""

import asyncio

import pytest

from .client import Shop

pytestmark = pytest.mark.e2e

USERS = 1_000
STOCK = 100
PRICE = 7_000


async def test_1000_concurrent_orders_for_100_units(shop: Shop) -> None:
    product = await shop.create_product("limited sneakers", PRICE, STOCK)
    users = [shop.new_user() for _ in range(USERS)]
    await asyncio.gather(*(shop.charge(u, 10_000) for u in users))

    # Prefer: wait holds each request until its saga ends (woken by NOTIFY, no polling)
    responses = await asyncio.gather(
        *(shop.place_order(u, [(product["id"], 1)], wait_s=30) for u in users)
    )
    assert {r.status_code for r in responses} <= {201, 202}
    orders = await asyncio.gather(
        *(shop.order_until_terminal(r.json()["order_id"], timeout_s=240) for r in responses)
    )

    paid = [o for o in orders if o["status"] == "PAID"]
    failed = [o for o in orders if o["status"] == "FAILED"]
    assert len(paid) == STOCK
    assert len(failed) == USERS - STOCK
    assert {o["failure_reason"] for o in failed} == {"OUT_OF_STOCK"}
    assert (await shop.product(product["id"]))["stock"] == 0
    balances = await asyncio.gather(*(shop.balance(u) for u in users))
    assert USERS * 10_000 - sum(balances) == STOCK * PRICE
    assert sorted(set(balances)) == [10_000 - PRICE, 10_000]

"""kill -9 a service with orders in flight: every order still ends, and nothing is lost."""

import asyncio
import collections

import pytest

from .client import Shop

pytestmark = pytest.mark.e2e

ORDERS = 150


async def _invariants_after_crash(shop: Shop, victim: str) -> None:
    cheap = await shop.create_product(f"{victim} socks", 1_500, 60)
    dear = await shop.create_product(f"{victim} coat", 25_000, 40)
    coupon = await shop.create_coupon(
        discount_type="PERCENT", discount_value=10, total_quantity=ORDERS
    )
    users = [shop.new_user() for _ in range(ORDERS)]
    charged = {u: 20_000 + (i % 3) * 15_000 for i, u in enumerate(users)}
    await asyncio.gather(*(shop.charge(u, amount) for u, amount in charged.items()))
    user_coupons = dict(
        zip(users, await asyncio.gather(*(shop.issue(coupon["id"], u) for u in users)), strict=True)
    )

    async def place(i: int, user: int) -> str:
        items = [(cheap["id"], 1 + i % 2)] + ([(dear["id"], 1)] if i % 2 else [])
        r = await shop.place_order(user, items, user_coupons[user] if i % 3 else None)
        assert r.status_code == 202, r.text
        return str(r.json()["order_id"])

    placing = asyncio.gather(*(place(i, u) for i, u in enumerate(users)))
    await asyncio.sleep(0.3)  # orders are in flight
    shop.system.services[victim].kill()
    order_ids = await placing
    await asyncio.sleep(1)
    await shop.system.services[victim].start()
    orders = await asyncio.gather(*(shop.order_until_terminal(o, timeout_s=180) for o in order_ids))
    by_user = {o["user_id"]: o for o in orders}
    assert {o["status"] for o in orders} <= {"PAID", "FAILED"}

    # money conserved: each balance is what was charged minus what its order paid, exactly once
    for user in users:
        order = by_user[user]
        spent = order["total"] if order["status"] == "PAID" else 0
        await shop.eventually(lambda u=user: shop.balance(u), charged[user] - spent)
        kinds = collections.Counter(h["type"] for h in await shop.history(user))
        assert kinds["PAYMENT"] - kinds["REFUND"] == (1 if order["status"] == "PAID" else 0)
        assert kinds["PAYMENT"] <= 1

    # stock conserved: initial = left + sold in paid orders
    sold: collections.Counter[int] = collections.Counter()
    for order in orders:
        if order["status"] == "PAID":
            for line in order["lines"]:
                if line["status"] == "ORDERED":
                    sold[line["product_id"]] += line["quantity"]
    await shop.eventually(lambda: _stock(shop, cheap["id"]), 60 - sold[cheap["id"]])
    await shop.eventually(lambda: _stock(shop, dear["id"]), 40 - sold[dear["id"]])

    # no coupon used twice; coupons of failed orders are available again
    for user in users:
        order = by_user[user]
        user_coupon = await shop.user_coupon(user, user_coupons[user])
        used_here = order["status"] == "PAID" and order["user_coupon_id"] == user_coupons[user]
        await shop.eventually(
            lambda u=user: _coupon_status(shop, u, user_coupons[u]),
            "USED" if used_here else "AVAILABLE",
        )
        if used_here:
            assert user_coupon["used_order_id"] == order["order_id"]


async def _stock(shop: Shop, product_id: int) -> int:
    return int((await shop.product(product_id))["stock"])


async def _coupon_status(shop: Shop, user: int, user_coupon: int) -> str:
    return str((await shop.user_coupon(user, user_coupon))["status"])


async def test_kill_point_service_mid_saga(shop: Shop) -> None:
    await _invariants_after_crash(shop, "point")


async def test_kill_product_service_mid_saga(shop: Shop) -> None:
    await _invariants_after_crash(shop, "product")

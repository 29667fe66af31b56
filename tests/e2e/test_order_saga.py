"""The order saga end to end: four services as processes, real Kafka, PostgreSQL and Redis,
HTTP only."""

import asyncio
import uuid

import pytest

from .client import Shop

pytestmark = pytest.mark.e2e


async def test_happy_path_with_coupon(shop: Shop) -> None:
    user = shop.new_user()
    a = await shop.create_product("americano", 4_500, 10)
    b = await shop.create_product("croissant", 3_200, 5)
    coupon = await shop.create_coupon(
        discount_type="FIXED", discount_value=2_000, min_order_amount=10_000
    )
    await shop.charge(user, 50_000)
    user_coupon = await shop.issue(coupon["id"], user)

    r = await shop.place_order(user, [(a["id"], 2), (b["id"], 1)], user_coupon, wait_s=30)
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["status"] == "PAID"
    assert order["failure_reason"] is None
    assert order["subtotal"] == 2 * 4_500 + 3_200
    assert order["discount"] == 2_000
    assert order["total"] == 2 * 4_500 + 3_200 - 2_000
    assert order["paid_at"] is not None
    assert {
        (line["product_id"], line["status"], line["unit_price"]) for line in order["lines"]
    } == {
        (a["id"], "ORDERED", 4_500),
        (b["id"], "ORDERED", 3_200),
    }
    assert (await shop.product(a["id"]))["stock"] == 8
    assert (await shop.product(b["id"]))["stock"] == 4
    assert await shop.balance(user) == 50_000 - order["total"]
    coupon_now = await shop.user_coupon(user, user_coupon)
    assert coupon_now["status"] == "USED"
    assert coupon_now["used_order_id"] == order["order_id"]
    assert (await shop.order(order["order_id"]))["status"] == "PAID"


async def test_partial_order_excludes_the_line_out_of_stock(shop: Shop) -> None:
    user = shop.new_user()
    plenty = await shop.create_product("tea", 3_000, 10)
    scarce = await shop.create_product("cake", 6_000, 1)
    await shop.charge(user, 100_000)
    order = await shop.order_and_wait(user, [(plenty["id"], 1), (scarce["id"], 2)])
    assert order["status"] == "PAID"
    lines = {line["product_id"]: line for line in order["lines"]}
    assert lines[scarce["id"]]["status"] == "EXCLUDED"
    assert lines[scarce["id"]]["excluded_reason"] == "OUT_OF_STOCK"
    assert lines[plenty["id"]]["status"] == "ORDERED"
    assert order["total"] == 3_000
    assert (await shop.product(scarce["id"]))["stock"] == 1
    assert await shop.balance(user) == 97_000


async def test_order_with_every_line_out_of_stock_fails_and_takes_nothing(shop: Shop) -> None:
    user = shop.new_user()
    gone = await shop.create_product("sold out", 1_000, 0)
    await shop.charge(user, 10_000)
    order = await shop.order_and_wait(user, [(gone["id"], 1), (10**15, 1)])
    assert order["status"] == "FAILED"
    assert order["failure_reason"] == "OUT_OF_STOCK"
    reasons = {line["product_id"]: line["excluded_reason"] for line in order["lines"]}
    assert reasons == {gone["id"]: "OUT_OF_STOCK", 10**15: "PRODUCT_NOT_FOUND"}
    assert await shop.balance(user) == 10_000
    assert (await shop.product(gone["id"]))["stock"] == 0


async def test_insufficient_balance_fails_and_gives_stock_and_coupon_back(shop: Shop) -> None:
    user = shop.new_user()
    product = await shop.create_product("headphones", 90_000, 3)
    coupon = await shop.create_coupon(discount_type="PERCENT", discount_value=10)
    await shop.charge(user, 50_000)
    user_coupon = await shop.issue(coupon["id"], user)
    order = await shop.order_and_wait(user, [(product["id"], 1)], user_coupon)
    assert order["status"] == "FAILED"
    assert order["failure_reason"] == "INSUFFICIENT_BALANCE"
    assert await shop.balance(user) == 50_000
    await shop.eventually(lambda: _stock(shop, product["id"]), 3)
    await shop.eventually(lambda: _coupon_status(shop, user, user_coupon), "AVAILABLE")
    # the coupon given back works for the next order
    await shop.charge(user, 50_000)
    again = await shop.order_and_wait(user, [(product["id"], 1)], user_coupon)
    assert again["status"] == "PAID"
    assert again["discount"] == 9_000


async def _stock(shop: Shop, product_id: int) -> int:
    return int((await shop.product(product_id))["stock"])


async def _coupon_status(shop: Shop, user: int, user_coupon: int) -> str:
    return str((await shop.user_coupon(user, user_coupon))["status"])


async def test_invalid_coupons_fail_the_order_and_give_the_stock_back(shop: Shop) -> None:
    product = await shop.create_product("mug", 12_000, 20)
    coupon = await shop.create_coupon(
        discount_type="FIXED", discount_value=1_000, min_order_amount=20_000
    )
    owner, other = shop.new_user(), shop.new_user()
    for user in (owner, other):
        await shop.charge(user, 100_000)
    owners_coupon = await shop.issue(coupon["id"], owner)

    # someone else's coupon
    order = await shop.order_and_wait(other, [(product["id"], 2)], owners_coupon)
    assert (order["status"], order["failure_reason"]) == ("FAILED", "COUPON_INVALID")
    # under the minimum amount
    order = await shop.order_and_wait(owner, [(product["id"], 1)], owners_coupon)
    assert (order["status"], order["failure_reason"]) == ("FAILED", "COUPON_INVALID")
    # used: the first order takes it, the second is refused
    paid = await shop.order_and_wait(owner, [(product["id"], 2)], owners_coupon)
    assert paid["status"] == "PAID"
    order = await shop.order_and_wait(owner, [(product["id"], 2)], owners_coupon)
    assert (order["status"], order["failure_reason"]) == ("FAILED", "COUPON_INVALID")
    # a coupon id that does not exist
    order = await shop.order_and_wait(owner, [(product["id"], 2)], 10**15)
    assert (order["status"], order["failure_reason"]) == ("FAILED", "COUPON_INVALID")

    await shop.eventually(lambda: _stock(shop, product["id"]), 18)
    assert await shop.balance(other) == 100_000
    assert await shop.balance(owner) == 100_000 - paid["total"]


async def test_same_idempotency_key_20_times_concurrently_makes_one_order(shop: Shop) -> None:
    user = shop.new_user()
    product = await shop.create_product("pen", 1_000, 100)
    await shop.charge(user, 10_000)
    key = str(uuid.uuid4())
    responses = await asyncio.gather(
        *(shop.place_order(user, [(product["id"], 1)], idempotency_key=key) for _ in range(20))
    )
    created = {r.json()["order_id"] for r in responses if r.status_code in (201, 202)}
    assert len(created) == 1
    assert all(r.status_code in (201, 202, 409) for r in responses)
    [order_id] = created
    order = await shop.order_until_terminal(order_id)
    assert order["status"] == "PAID"
    r = await shop.http.get(shop.url("order", f"/users/{user}/orders"))
    assert [o["order_id"] for o in r.json()["items"]] == [order_id]
    assert await shop.balance(user) == 9_000

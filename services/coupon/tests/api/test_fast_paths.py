"""The coupon issue's fast path answers every request as its FastAPI route does
(shopkit.testing.fast_paths)."""

from coupon.config import Settings
from coupon.main import create_app
from shopkit.testing.fast_paths import Endpoint, served


async def test_the_fast_paths_answer_as_fastapi_does(settings: Settings) -> None:
    async with served(create_app, settings) as shop:
        made = await shop.admin.post(
            "/coupons",
            json={
                "name": "1,000 off",
                "discount_type": "FIXED",
                "discount_value": 1_000,
                "total_quantity": 100,
                "valid_days": 7,
                "min_order_amount": 0,
            },
        )
        coupon_id = made.json()["id"]

        async def held(user: int) -> object:
            return (await shop.admin.get(f"/users/{user}/coupons")).json()

        issue = Endpoint(
            "/coupons/{coupon_id}/issue",
            "POST",
            lambda user: (f"/coupons/{coupon_id}/issue", {"user_id": user}),
            volatile=frozenset({"user_coupon_id", "user_id", "issued_at", "expires_at"}),
            state=held,
        )
        await shop.agree([issue])

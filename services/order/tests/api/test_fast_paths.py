"""Placing an order: its fast path answers every request as its FastAPI route does
(shopkit.testing.fast_paths)."""

from order.config import Settings
from order.main import create_app
from shopkit.testing.fast_paths import Endpoint, served


async def test_the_fast_paths_answer_as_fastapi_does(settings: Settings) -> None:
    async with served(create_app, settings) as shop:

        async def orders(user: int) -> object:
            return (await shop.admin.get(f"/users/{user}/orders")).json()

        place = Endpoint(
            "/orders",
            "POST",
            lambda user: (
                "/orders",
                {
                    "user_id": user,
                    "items": [{"product_id": 1, "quantity": 2}],
                    "user_coupon_id": None,
                },
            ),
            volatile=frozenset({"order_id", "user_id", "created_at"}),
            state=orders,
        )
        await shop.agree([place])

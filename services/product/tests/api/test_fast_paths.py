"""The product read's fast path answers every request as its FastAPI route does
(shopkit.testing.fast_paths)."""

from product.config import Settings
from product.main import create_app
from shopkit.testing.fast_paths import Endpoint, served


async def test_the_fast_paths_answer_as_fastapi_does(settings: Settings) -> None:
    async with served(create_app, settings) as shop:
        made = await shop.admin.post("/products", json={"name": "떡", "price": 1_000, "stock": 5})
        product_id = made.json()["id"]
        read = Endpoint(
            "/products/{product_id}", "GET", lambda _: (f"/products/{product_id}", None)
        )
        await shop.agree([read])

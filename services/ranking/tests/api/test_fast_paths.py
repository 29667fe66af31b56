"""The top-5 read's fast path answers every request as its FastAPI route does
(shopkit.testing.fast_paths)."""

from ranking.config import Settings
from ranking.main import create_app
from shopkit.testing.fast_paths import Endpoint, served


async def test_the_fast_paths_answer_as_fastapi_does(settings: Settings) -> None:
    async with served(create_app, settings) as shop:
        top = Endpoint("/rankings/top-products", "GET", lambda _: ("/rankings/top-products", None))
        await shop.agree([top])

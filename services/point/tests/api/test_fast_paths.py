"""The charge's fast path answers every request as its FastAPI route does (shopkit.testing.fast_paths)."""

from point.config import Settings
from point.main import create_app
from shopkit.testing.fast_paths import Endpoint, served


async def test_the_fast_paths_answer_as_fastapi_does(settings: Settings) -> None:
    async with served(create_app, settings) as shop:

        async def balance(user: int) -> int:
            answer = await shop.admin.get(f"/points/{user}")
            balance: int = answer.json()["balance"]
            return balance

        charge = Endpoint(
            "/points/{user_id}/charge",
            "POST",
            lambda user: (f"/points/{user}/charge", {"amount": 1_000}),
            volatile=frozenset({"user_id"}),
            state=balance,
        )
        await shop.agree([charge])

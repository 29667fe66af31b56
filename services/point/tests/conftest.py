from collections.abc import AsyncIterator

import httpx
import pytest

from point.config import Settings
from point.main import create_app
from shopkit.testing import ActAsUser, running_server, temp_database, unique


@pytest.fixture(scope="session")
async def settings() -> AsyncIterator[Settings]:
    async with temp_database("point") as url:
        yield Settings(database_url=url, kafka_topic_prefix=unique("t.point.") + ".")


@pytest.fixture(scope="session")
async def base_url(settings: Settings) -> AsyncIterator[str]:
    async with running_server(create_app(settings)) as url:
        yield url


@pytest.fixture
async def client(base_url: str, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=500)
    auth = ActAsUser(settings.jwt_secret)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits, auth=auth) as c:
        yield c


@pytest.fixture
def user_id() -> int:
    import random

    return random.randint(1, 2**62)

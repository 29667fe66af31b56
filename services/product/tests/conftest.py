from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from product.config import Settings
from product.main import create_app
from product.service.handlers import CONSUMERS
from shop_contracts import topics
from shopkit.http.auth import mint
from shopkit.testing import (
    KAFKA,
    asyncpg_dsn,
    eventually,
    running_server,
    temp_database,
    topic_reader,
    unique,
)

NewProduct = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture(scope="session")
async def settings() -> AsyncIterator[Settings]:
    async with temp_database("product") as url:
        yield Settings(database_url=url, kafka_topic_prefix=unique("t.product.") + ".")


@pytest.fixture(scope="session")
async def base_url(settings: Settings) -> AsyncIterator[str]:
    async with running_server(create_app(settings)) as url:
        yield url


@pytest.fixture
async def client(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=500)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as c:
        yield c


@pytest.fixture
async def db(settings: Settings, base_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection for checking what the API does not show (after the app migrated)."""
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def admin_headers(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(settings.jwt_secret, '1', 'admin')}"}


@pytest.fixture
def user_headers(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(settings.jwt_secret, '2', 'user')}"}


@pytest.fixture
def new_product(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> NewProduct:
    async def create(*, name: str = "Kimchi 1kg", price: int = 12_000, stock: int = 10) -> Any:
        r = await client.post(
            "/products", json={"name": name, "price": price, "stock": stock}, headers=admin_headers
        )
        assert r.status_code == 201, r.text
        return r.json()

    return create


@pytest.fixture
def consumed_everything(settings: Settings) -> Callable[[], Awaitable[None]]:
    """Waits until the service's consumer group has committed every message published so far
    on the order topic: after it, nothing already published can still change anything."""
    topic = settings.topic(topics.ORDER_EVENTS)
    groups = [settings.kafka_topic_prefix + spec.group_id for spec in CONSUMERS]

    async def wait() -> None:
        async with topic_reader(topic) as reader:
            await eventually(lambda: _assigned(reader))
            end = await reader.end_offsets(list(reader.assignment()))
        admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
        await admin.start()
        try:

            async def caught_up() -> bool:
                for group in groups:
                    committed = await admin.list_consumer_group_offsets(group)
                    for tp, offset in end.items():
                        done = committed.get(tp)
                        if offset > 0 and (done is None or done.offset < offset):
                            return False
                return True

            await eventually(caught_up, timeout_s=60)
        finally:
            await admin.close()

    return wait


async def _assigned(reader: Any) -> bool:
    return bool(reader.assignment())
